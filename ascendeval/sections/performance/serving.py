"""The serving benchmark against an HTTP server (`vllm bench serve` semantics): the main load point,
rate and concurrency sweeps, and their plots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ... import loadgen
from ...context import SectionRun, SectionSkipped
from .setup import Plan, token_prompts


@dataclass
class ServingResult:
    points: list[dict[str, Any]]  # one metrics dict per load point (main + sweeps)
    plots: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        keys = ["sweep", "request_rate_label", "max_concurrency", "completed_count", "failed_count",
                "request_throughput_req_per_s", "output_tok_per_s", "total_tok_per_s", "peak_output_tok_per_s",
                "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
                "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "median_e2el_ms", "p99_e2el_ms", "goodput_req_per_s"]
        return pd.DataFrame([{k: pt.get(k) for k in keys} for pt in self.points])


class ServingFailed(RuntimeError):
    """Too many requests of a load point failed; measured rows and metrics are already saved."""


def _rate(x: Any) -> float:
    return math.inf if x == "inf" else float(x)


def serving(run: SectionRun, p: Plan) -> ServingResult:
    """Main load point, then the request-rate sweep and the concurrency sweep, against a served
    model; rows after every point go to records/performance.requests.jsonl."""
    c = p.conf.serving
    if not c.enabled:
        raise SectionSkipped("serving.enabled is false")
    if c.url:  # this section's own endpoint wins over the run's server
        return _serve_against(run, p, c.url.rstrip("/"))
    if run.cfg.target.engine == "hf" and not run.cfg.server.url:
        raise SectionSkipped("not applicable: the hf engine has no server (set performance.serving.url to "
                             "benchmark an existing OpenAI-compatible endpoint)")
    # params' server.url, else the run's shared server (ASCENDEVAL_SHARED_SERVER_URL), else one
    # started here for this step and stopped after it
    with run.served("serving") as base:
        return _serve_against(run, p, base)


def _serve_against(run: SectionRun, p: Plan, base_url: str) -> ServingResult:
    c = p.conf.serving
    models = loadgen.list_models(base_url, run.cfg.server.api_key)
    name = run.cfg.server.served_model_name if run.cfg.server.served_model_name in models else models[0]
    ep = loadgen.Endpoint(base_url, name, api=c.api, api_key=run.cfg.server.api_key, timeout_s=c.timeout_s,
                          ignore_eos=c.ignore_eos)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model().path, trust_remote_code=run.cfg.model.trust_remote_code)
    slo = {"ttft": c.slo_ttft_ms, "tpot": c.slo_tpot_ms, "e2el": c.slo_e2el_ms}
    points: list[dict[str, Any]] = []
    all_rows: list[dict[str, Any]] = []
    n_sweep = c.sweep_num_prompts or c.num_prompts
    plan_points = [("main", loadgen.LoadSpec(_rate(c.request_rate), c.burstiness, c.max_concurrency, c.seed), c.num_prompts)]
    plan_points += [("rate", loadgen.LoadSpec(_rate(r), c.burstiness, c.max_concurrency, c.seed), n_sweep)
                    for r in c.request_rates]
    plan_points += [("concurrency", loadgen.LoadSpec(math.inf, c.burstiness, k, c.seed), n_sweep) for k in c.concurrencies]
    n_warm = c.warmup_requests
    for i, (sweep, spec, n) in enumerate(plan_points):
        # Fresh prompts for every point and for its warm-up: the server caches prefixes (vLLM's
        # default), so prompts sent before would be timed as cache hits.
        ids = token_prompts(tok, n + n_warm, c.input_len, c.seed + 100 + i)  # exact input length
        prompts: list[Any] = [tok.decode(x) for x in ids] if c.api == "chat" else ids
        lr = loadgen.run_load(ep, prompts[n_warm:], c.output_len, spec, prompt_tokens=[c.input_len] * n,
                              warmup_requests=n_warm, warmup_prompts=prompts[:n_warm])
        m = lr.metrics(slo)
        m["sweep"] = sweep
        points.append(m)
        all_rows += lr.rows(sweep=sweep)
        run.save_rows("requests", all_rows)  # after every point: a crash later keeps these
        run.add("serving", points)
        if m["failed_rate"] and m["failed_rate"] > c.max_failed_fraction:
            first = next(iter(m["errors"]), "?")
            raise ServingFailed(f"{m['failed_count']}/{m['num_requests']} requests failed at {spec.label()} "
                                f"(allowed fraction {c.max_failed_fraction}); first error: {first}")
    main = points[0]
    run.add("serving_main", {k: v for k, v in main.items() if k != "errors"})
    plots = serving_plots(run, points, all_rows)
    return ServingResult(points, plots)


def serving_plots(run: SectionRun, points: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """TTFT/TPOT vs request rate, throughput vs concurrency, latency CDFs; PNGs under artifacts/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    rate_pts = [pt for pt in points if pt["sweep"] == "rate"]
    if rate_pts:
        finite = [pt for pt in rate_pts if pt["request_rate_req_per_s"] is not None]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, axis in (("ttft", ax[0]), ("tpot", ax[1])):
            xs = [pt["request_rate_req_per_s"] for pt in finite]
            for stat in ("median", "p99"):
                axis.plot(xs, [pt[f"{stat}_{key}_ms"] for pt in finite], marker="o", label=stat)
            for pt in rate_pts:
                if pt["request_rate_req_per_s"] is None:
                    axis.axhline(pt[f"median_{key}_ms"] or 0, ls="--", c="grey", label="median at rate inf")
            axis.set_xlabel("request rate (req/s)")
            axis.set_ylabel(f"{key.upper()} (ms)")
            axis.legend()
        fig.tight_layout()
        path = run.artifact_path("perf_latency_vs_rate.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    conc_pts = [pt for pt in points if pt["sweep"] == "concurrency"]
    if conc_pts:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.plot([pt["max_concurrency"] for pt in conc_pts], [pt["output_tok_per_s"] or 0 for pt in conc_pts], marker="o")
        ax.set_xlabel("max concurrency")
        ax.set_ylabel("output tokens/s")
        ax.set_xscale("log", base=2)
        fig.tight_layout()
        path = run.artifact_path("perf_throughput_vs_concurrency.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    if rows:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        df = pd.DataFrame([r for r in rows if r["success"] and not r["warmup"]])
        if not df.empty:
            for (sweep, load), g in df.groupby(["sweep", "load"]):
                for key, axis in (("ttft_ms", ax[0]), ("e2el_ms", ax[1])):
                    v = np.sort(g[key].dropna().to_numpy())
                    axis.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{sweep} {load}")
            for key, axis in (("TTFT (ms)", ax[0]), ("E2E latency (ms)", ax[1])):
                axis.set_xlabel(key)
                axis.set_ylabel("fraction of requests")
            ax[1].legend(fontsize=7)
        fig.tight_layout()
        path = run.artifact_path("perf_latency_cdf.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    return out


def show_plots(result: ServingResult | None) -> list[str]:
    """Display the serving plots inline (a notebook helper; nothing to show if serving did not run)."""
    if result is None or not result.plots:
        raise SectionSkipped("no serving plots (the serving step did not run)")
    from IPython.display import Image, display

    for path in result.plots:
        display(Image(filename=path))
    return result.plots

