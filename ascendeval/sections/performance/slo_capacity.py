"""Capacity under an SLO: the highest request rate, and the highest concurrency, at which at least
`target_share` of the requests meet every service-level objective (TTFT, TPOT, E2EL).

The SLOs are the params' (`serving.slo_*_ms`) or, when the params set none, multiples of a
single-request baseline measured first (`serving.capacity.*_x_baseline`), so every run has one
and the card's goodput is measured. The search is adaptive with a bounded request budget (split
between the two searches): from the highest request throughput the serving sweep measured
(else the baseline's pace, one request in flight) the rate doubles while probes meet the target
share, halves while they miss it, then bisects (geometrically) between the last rate that met it
and the first that did not, until the two are within `resolution`; concurrency does the same on
integers, from the requests in flight at the highest passing rate (Little's law; else 1). Every probe is
a clean load point (points.Client.measure), its goodput and share recorded, its requests saved.

A probe of n requests that "meets 99 %" with n < 100 means every request met the SLOs: the card
states n, so a reader knows the resolution of the share.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from ... import loadgen, plotting
from ...context import SectionRun, SectionSkipped
from ...output_guard import OutputGuard
from . import points as points_mod

SLO_KEYS = ("ttft", "tpot", "e2el")


@dataclass
class Slo:
    """The objectives a request must meet (milliseconds; None: not an objective)."""

    ttft_ms: float | None
    tpot_ms: float | None
    e2el_ms: float | None
    source: str  # "params" | "baseline"

    @property
    def ms(self) -> dict[str, float | None]:
        return {"ttft": self.ttft_ms, "tpot": self.tpot_ms, "e2el": self.e2el_ms}

    def label(self) -> str:
        """'TTFT ≤ 120 ms, TPOT ≤ 25 ms' (the objectives that are set)."""
        names = {"ttft": "TTFT", "tpot": "TPOT", "e2el": "E2EL"}
        return ", ".join(f"{names[k]} ≤ {v:.4g} ms" for k, v in self.ms.items() if v is not None)


def effective_slo(run: SectionRun, client: points_mod.Client) -> Slo | None:
    """The params' SLOs, else ones derived from a single-request baseline measured now (recorded
    as `serving_slo`); None when the params set none and the capacity search is off. Measured once
    per section: a later step reads it from the record."""
    c = client.conf
    known = run.metrics.get("serving_slo")
    if isinstance(known, dict):
        return Slo(known["ttft_ms"], known["tpot_ms"], known["e2el_ms"], known["source"])
    if any(v is not None for v in (c.slo_ttft_ms, c.slo_tpot_ms, c.slo_e2el_ms)):
        slo = Slo(c.slo_ttft_ms, c.slo_tpot_ms, c.slo_e2el_ms, "params")
        run.add("serving_slo", {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2el_ms": slo.e2el_ms,
                                "source": "params", "single_request_baseline": None})
        return slo
    cap = c.capacity
    if not cap.enabled:
        return None
    base = single_request_baseline(client)
    factors = {"ttft": cap.ttft_x_baseline, "tpot": cap.tpot_x_baseline, "e2el": cap.e2el_x_baseline}
    derived = {k: None if f is None or base[f"median_{k}_ms"] is None else _round_up(f * base[f"median_{k}_ms"])
               for k, f in factors.items()}
    slo = Slo(derived["ttft"], derived["tpot"], derived["e2el"], "baseline")
    run.add("serving_slo", {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2el_ms": slo.e2el_ms,
                            "source": "baseline", "single_request_baseline": base,
                            "factors": {f"{k}_x_baseline": v for k, v in factors.items()}})
    return slo


def _round_up(ms: float) -> float:
    """Two significant digits, rounded up: an objective a reader can quote (37.2 -> 38)."""
    if ms <= 0:
        return ms
    step = 10 ** (math.floor(math.log10(ms)) - 1)
    return math.ceil(ms / step - 1e-9) * step


def single_request_baseline(client: points_mod.Client) -> dict[str, Any]:
    """Median TTFT / TPOT / E2EL of `capacity.baseline_requests` requests sent one at a time: the
    pace of the deployment without contention, which the default SLOs are multiples of."""
    cap = client.conf.capacity
    got = client.measure(loadgen.LoadSpec(math.inf, max_concurrency=1), cap.baseline_requests,
                         client.conf.seed + 7_000, n_warm=1, settle_max_s=min(client.conf.settle_max_s, 5.0))
    m = got.run.metrics()
    if not m["completed_count"]:
        raise RuntimeError(f"the single-request baseline failed: {next(iter(m['errors']), '?')}")
    return {"num_requests": m["num_requests"], "completed_count": m["completed_count"],
            "median_ttft_ms": m["median_ttft_ms"], "median_tpot_ms": m["median_tpot_ms"],
            "median_e2el_ms": m["median_e2el_ms"], "request_throughput_req_per_s": m["request_throughput_req_per_s"]}


# --------------------------------------------------------------------------- the search


def search(probe: Callable[[float], bool], start: float, resolution: float, can_probe: Callable[[float], bool],
           integer: bool = False, lowest: float = 0.0) -> dict[str, Any]:
    """Highest x with probe(x) true, assuming the share met falls as x grows: double from `start`
    while probes pass, halve while they fail (down to `lowest`), then bisect between the last
    pass and the first fail until hi/lo - 1 <= resolution (integers: until they are adjacent).
    `can_probe(x)` false (the budget cannot pay for that probe) stops the search where it is. Returns the highest passing
    x (None: none passed), the lowest failing x (None: none failed), and why it stopped."""
    passed: float | None = None
    failed: float | None = None
    x = float(int(start) if integer else start)
    while True:
        if not can_probe(x):
            return {"highest_passing": passed, "lowest_failing": failed, "stop_reason": "budget"}
        if probe(x):
            passed = x
        else:
            failed = x
        if passed is None:  # nothing met the target yet: go lower
            nxt = math.floor(x / 2) if integer else x / 2
            if nxt < max(lowest, 1 if integer else 1e-9) or nxt == x:
                return {"highest_passing": None, "lowest_failing": failed, "stop_reason": "not met at the lowest load"}
        elif failed is None:
            nxt = x * 2
        else:
            if (integer and failed - passed <= 1) or (not integer and failed / passed - 1 <= resolution):
                return {"highest_passing": passed, "lowest_failing": failed, "stop_reason": "resolved"}
            nxt = math.floor((passed + failed) / 2) if integer else math.sqrt(passed * failed)
        x = float(nxt)


def capacity(run: SectionRun, p: Any, guard: OutputGuard | None = None) -> "CapacityResult":
    """The step: SLOs (params or baseline), then the rate search and the concurrency search, each
    probe a clean load point. Records `capacity_slo` and the probes' rows
    (performance.capacity_requests.jsonl)."""
    c = p.conf.serving
    cap = c.capacity
    if not c.enabled:
        raise SectionSkipped("serving.enabled is false", zh="serving.enabled 为 false")
    if not cap.enabled:
        raise SectionSkipped("serving.capacity.enabled is false", zh="serving.capacity.enabled 为 false")
    if run.cfg.target.engine == "hf" and not (c.url or run.cfg.server.url):
        raise SectionSkipped("not applicable: the hf engine has no server",
                             zh="不适用：hf 引擎没有服务")
    from .serving import make_client

    with run.served("serving_capacity") as base:
        client = make_client(run, p, c.url.rstrip("/") if c.url else base, guard)
        return _capacity_against(run, client, guard)


def _capacity_against(run: SectionRun, client: points_mod.Client, guard: OutputGuard | None) -> "CapacityResult":
    c = client.conf
    cap = c.capacity
    t0 = time.perf_counter()
    slo = effective_slo(run, client)
    assert slo is not None  # capacity enabled: params' or baseline SLOs
    base = (run.metrics.get("serving_slo") or {}).get("single_request_baseline") or single_request_baseline(client)
    used = {"requests": 0}
    probes: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {"slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2el_ms": slo.e2el_ms},
                           "slo_source": slo.source, "target_share": cap.target_share,
                           "request_budget": cap.request_budget, "probe_requests": cap.probe_requests}

    def probe_size(kind: str, x: float) -> int:
        # a concurrency probe keeps its slots full for a while: at least two requests per slot
        return cap.probe_requests if kind == "rate" else max(cap.probe_requests, 2 * int(x))

    def probe(kind: str, x: float) -> bool:
        rate = x if kind == "rate" else math.inf
        conc = int(x) if kind == "concurrency" else None
        n = probe_size(kind, x)
        spec = loadgen.LoadSpec(rate, c.burstiness, conc, c.seed + len(probes))
        got = client.measure(spec, n, c.seed + 50_000 + 97 * len(probes), n_warm=0,
                             settle_max_s=min(c.settle_max_s, cap.settle_max_s))
        used["requests"] += n
        spent[kind] = spent.get(kind, 0) + n
        m = got.run.metrics(slo.ms)
        share = (m["good_count"] or 0) / m["num_requests"]
        ok = share >= cap.target_share
        if guard is not None:
            guard.keep(f"capacity.{kind}", loadgen.guard_outputs(got.run.results, got.prompts, client.tok, c.api),
                       sampled=False, ignore_eos=c.ignore_eos)
        probes.append({"search": kind, "x": x, "request_rate_req_per_s": None if math.isinf(rate) else rate,
                       "max_concurrency": conc, "num_requests": m["num_requests"],
                       "completed_count": m["completed_count"], "good_count": m["good_count"],
                       "share_met": share, "met": ok, "goodput_req_per_s": m["goodput_req_per_s"],
                       "request_throughput_req_per_s": m["request_throughput_req_per_s"],
                       "output_tok_per_s": m["output_tok_per_s"], "p99_ttft_ms": m["p99_ttft_ms"],
                       "p99_tpot_ms": m["p99_tpot_ms"], "p99_e2el_ms": m["p99_e2el_ms"],
                       "mean_e2el_ms": m.get("mean_e2el_ms"), "duration_s": m["duration_s"],
                       "prefix_cache_reset": got.clean["prefix_cache_reset"],
                       # a probe the client itself could not drive measures the client: its verdict is flagged
                       "client_bound": got.run.client.get("client_bound")})
        rows.extend(got.run.rows(search=kind, probe=len(probes) - 1))
        run.save_rows("capacity_requests", rows)
        run.add("capacity_slo", {**out, "probes": probes, "requests_used": used["requests"]})
        return ok

    # each search gets its share of the budget: one that starts far from its answer must not
    # leave the other without probes
    share = cap.request_budget // max(len(cap.search), 1)
    spent: dict[str, int] = {}

    def can_probe(kind: str) -> Callable[[float], bool]:
        return lambda x: spent.get(kind, 0) + probe_size(kind, x) <= share

    # Start at the highest request throughput the serving sweep measured (the rate the deployment
    # sustains flat out: the SLO boundary of a probe is near it, above it when the probe is short
    # enough to be absorbed as a burst), else at the deployment's pace with one request in flight.
    # Starting lower only adds the slowest probes (16 requests at a low rate take the longest);
    # the search goes down from there as far as before (1/8 of that throughput).
    measured = [p.get("request_throughput_req_per_s") or 0 for p in run.metrics.get("serving") or []]
    if measured and max(measured) > 0:
        start_rate, lowest = max(measured), max(measured) / 8
    else:
        start_rate = max(1000.0 / base["median_e2el_ms"], 0.1) if base.get("median_e2el_ms") else 1.0
        lowest = start_rate / 4
    if "rate" in cap.search:
        start = min(start_rate, cap.max_rate)
        res = search(lambda x: probe("rate", x), start, cap.resolution, can_probe("rate"), lowest=min(lowest, start))
        out["rate"] = {**res, "start": start}
    if "concurrency" in cap.search:
        start_conc = littles_law_start(probes, out.get("rate"))
        res = search(lambda x: probe("concurrency", x), start_conc, cap.resolution, can_probe("concurrency"),
                     integer=True)
        out["concurrency"] = {**res, "start": start_conc}
    out.update(probes=probes, requests_used=used["requests"], wall_s=time.perf_counter() - t0)
    run.add("capacity_slo", out)
    return CapacityResult(out, capacity_plot(run, out))


def littles_law_start(probes: list[dict[str, Any]], rate: dict[str, Any] | None) -> int:
    """Where the concurrency search starts: the requests in flight at the highest rate that met
    the SLOs (Little's law: its throughput x its mean end-to-end latency), rounded down; 1
    without a rate answer. The search then doubles or halves from there as from 1, so the answer
    is the same boundary; it skips the probes far below it (on a slow deployment one request at a
    time is the longest probe of all)."""
    best = (rate or {}).get("highest_passing")
    at = [pr for pr in probes if pr["search"] == "rate" and pr["x"] == best and pr["met"]]
    if not at or not at[0].get("mean_e2el_ms") or not at[0].get("request_throughput_req_per_s"):
        return 1
    return max(1, int(at[0]["request_throughput_req_per_s"] * at[0]["mean_e2el_ms"] / 1000.0))


@dataclass
class CapacityResult:
    record: dict[str, Any]  # metrics.capacity_slo
    plots: list[str]

    def table(self) -> Any:
        import pandas as pd

        keys = ["search", "request_rate_req_per_s", "max_concurrency", "num_requests", "good_count", "share_met",
                "met", "goodput_req_per_s", "p99_ttft_ms", "p99_tpot_ms", "output_tok_per_s"]
        return pd.DataFrame([{k: pr.get(k) for k in keys} for pr in self.record.get("probes") or []])


# --------------------------------------------------------------------------- plot


def capacity_plot(run: SectionRun, res: dict[str, Any]) -> list[str]:
    """Share of requests meeting the SLOs per probe, one panel per search, the target share as a
    line and the answer marked."""
    probes = res.get("probes") or []
    kinds = [k for k in ("rate", "concurrency") if any(pr["search"] == k for pr in probes)]
    if not kinds:
        return []
    word = plotting.word
    with plotting.style(plotting.language(run)) as (plt, lang):
        fig, axs = plotting.figure(plt, 3.6, ncols=len(kinds))
        for ax, kind in zip(axs[0], kinds):
            pts = sorted((pr for pr in probes if pr["search"] == kind), key=lambda pr: pr["x"])
            xs = [pr["x"] for pr in pts]
            ys = [100 * pr["share_met"] for pr in pts]
            ax.plot(xs, ys, "-", color="#999999", lw=1)
            for pr, x, y in zip(pts, xs, ys):
                ax.plot([x], [y], "o", color="#54a24b" if pr["met"] else "#e45756", ms=7)
            ax.axhline(100 * res["target_share"], color="grey", ls="--", lw=1, label=word(lang, "slo_target"))
            best = (res.get(kind) or {}).get("highest_passing")
            if best is not None:
                ax.axvline(best, color="#54a24b", ls=":", lw=1.5, label=word(lang, "slo_answer"))
            if len(xs) > 1 and max(xs) / max(min(xs), 1e-9) > 8:
                plotting.log_scale(ax, "x")
            ax.set_ylim(-2, 104)
            ax.set_xlabel(word(lang, "rate_axis" if kind == "rate" else "conc_axis"))
            ax.set_ylabel(word(lang, "share_met_axis"))
            ax.set_title(word(lang, f"capacity_{kind}"))
        fig.suptitle(f"{word(lang, 'capacity_title')}\n{_slo_text(res)}")
        plotting.legend_below(fig, *axs[0][0].get_legend_handles_labels())
        path = plotting.save(fig, run.artifact_path("perf_capacity_slo.png"))
    return [str(path)]


def _slo_text(res: dict[str, Any]) -> str:
    s = res.get("slo") or {}
    return Slo(s.get("ttft_ms"), s.get("tpot_ms"), s.get("e2el_ms"), res.get("slo_source", "")).label()
