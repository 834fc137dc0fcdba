"""The serving client's own error, measured in the run that prints the serving figures.

Before the load points, the client (loadgen.py, the transport the params choose) drives the
in-package simulated server (simserver.py: TTFT and per-token delays known, every write stamped on
this machine's monotonic clock) at the run's planned request rates; every request is matched to the
server's own record, so the client's share of TTFT (send + receive) is measured, not assumed. The
card prints it beside the serving figures, and each serving point carries the client's own figures
(event-loop lag, send lateness, backlog, `client_bound`) from its own run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ... import loadgen
from ...context import SectionRun, SectionSkipped
from .setup import Plan

# the simulated server's delays: the truth server, so calibration figures compare with
# benchmarks/loadgen_truth.py
SIM_TTFT_MS, SIM_TPOT_MS = 50.0, 10.0


@dataclass
class CalibrationResult:
    rows: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        keys = ["request_rate_label", "num_requests", "matched_count", "client_overhead_median_ms",
                "client_overhead_p99_ms", "client_send_median_ms", "client_receive_median_ms", "ttft_error_pct",
                "tpot_error_pct"]
        out = pd.DataFrame([{k: r.get(k) for k in keys} for r in self.rows])
        out["client_bound"] = [bool((r.get("client") or {}).get("client_bound")) for r in self.rows]
        return out


def planned_rates(conf: Any) -> list[float]:
    """The serving step's distinct request rates (main point and rate sweep), finite ones rising,
    then inf when planned (the concurrency points are sent at rate inf too)."""
    rates = {math.inf if r == "inf" else float(r) for r in [conf.request_rate, *conf.request_rates]}
    if conf.concurrencies:
        rates.add(math.inf)
    return sorted(rates)


def calibration(run: SectionRun, p: Plan) -> CalibrationResult:
    """The step: `loadgen.calibrate` at the planned rates; records `loadgen_calibration`, and each
    matched request's row in records/performance.client_calibration.jsonl."""
    c = p.conf.serving
    if not c.enabled:
        raise SectionSkipped("serving.enabled is false", zh="serving.enabled 为 false")
    if not c.loadgen.calibrate:
        raise SectionSkipped("serving.loadgen.calibrate is false", zh="serving.loadgen.calibrate 为 false")
    if run.cfg.target.engine == "hf" and not (c.url or run.cfg.server.url):
        raise SectionSkipped("not applicable: the hf engine has no server", zh="不适用：hf 引擎没有服务")
    n_sweep = c.sweep_num_prompts or c.num_prompts
    rows = loadgen.calibrate(planned_rates(c), num_prompts=max(c.num_prompts, n_sweep), input_len=c.input_len,
                             output_len=c.output_len, ttft_ms=SIM_TTFT_MS, tpot_ms=SIM_TPOT_MS,
                             burstiness=c.burstiness, seed=c.seed, api=c.api, transport=c.loadgen.transport,
                             max_seconds_per_rate=c.loadgen.calibration_seconds_per_rate,
                             min_requests=c.loadgen.calibration_min_requests)
    requests = []
    for r in rows:
        r["sim_ttft_ms"], r["sim_tpot_ms"] = SIM_TTFT_MS, SIM_TPOT_MS
        requests += [{"request_rate_label": r["request_rate_label"], **q} for q in r.pop("requests")]
    run.save_rows("client_calibration", requests)  # the rows every median above is taken over
    run.add("loadgen_calibration", rows)
    return CalibrationResult(rows)
