"""The serving benchmark against an HTTP server (`vllm bench serve` semantics): the main load point,
rate and concurrency sweeps, and their plots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ... import device as device_mod
from ... import loadgen, plotting
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
    for i, (sweep, spec, n) in enumerate(plan_points):
        # `warmup_load`: the first point is preceded by its own load once, untimed, for servers
        # that build kernels or capture graphs per batch shape on first use.
        as_load = c.warmup_load and i == 0
        n_warm = n if as_load else c.warmup_requests
        # Fresh prompts for every point and for its warm-up: the server caches prefixes (vLLM's
        # default), so prompts sent before would be timed as cache hits.
        ids = token_prompts(tok, n + n_warm, c.input_len, c.seed + 100 + i)  # exact input length
        prompts: list[Any] = [tok.decode(x) for x in ids] if c.api == "chat" else ids
        settle_s, busy = device_mod.wait_for_quiet_host(c.settle_max_s) if c.settle_max_s else (None, None)
        lr = loadgen.run_load(ep, prompts[n_warm:], c.output_len, spec, prompt_tokens=[c.input_len] * n,
                              warmup_requests=n_warm, warmup_prompts=prompts[:n_warm], warmup_as_load=as_load)
        m = lr.metrics(slo)
        m["settle_wait_s"], m["host_cpu_busy_before"] = settle_s, busy
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
    """TTFT/TPOT vs request rate, throughput vs concurrency, TTFT distributions; PNGs under artifacts/."""
    c = run.conf.serving
    n = max((pt.get("num_requests") or 0 for pt in points), default=0)
    workload = {"inp": c.input_len, "out": c.output_len, "n": n}
    rate_pts = [pt for pt in points if pt["sweep"] == "rate"]
    conc_pts = [pt for pt in points if pt["sweep"] == "concurrency"]
    out = []
    with plotting.style(plotting.language(run)) as (plt, lang):
        if rate_pts:
            out.append(_latency_vs_rate(plt, lang, rate_pts, workload, run.artifact_path("perf_latency_vs_rate.png")))
        if conc_pts:
            out.append(_throughput_vs_concurrency(plt, lang, conc_pts, workload,
                                                  run.artifact_path("perf_throughput_vs_concurrency.png")))
        timed = [r for r in rows if r["success"] and not r["warmup"] and r.get("ttft_ms") is not None]
        if timed:
            out.append(_ttft_cdf(plt, lang, points, timed, workload, run.artifact_path("perf_latency_cdf.png")))
    return [str(p) for p in out]


def _rate_ticks(pts: list[dict[str, Any]], lang: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The rate points in rising order, the infinite rate ("all at once") last, and their tick labels."""
    finite = sorted((pt for pt in pts if pt["request_rate_req_per_s"] is not None),
                    key=lambda pt: pt["request_rate_req_per_s"])
    inf = [pt for pt in pts if pt["request_rate_req_per_s"] is None][:1]
    labels = [f"{pt['request_rate_req_per_s']:g}" for pt in finite] + [plotting.word(lang, "all_at_once")] * len(inf)
    return finite + inf, labels


def _latency_vs_rate(plt: Any, lang: str, pts: list[dict[str, Any]], workload: dict[str, Any], path: Any) -> Any:
    """Median and P99 per rate on a categorical axis: the rates evenly spaced and the
    infinite rate a separate, unconnected point at the right, so its queueing latency neither
    stretches the axis nor reads as a trend of the finite rates."""
    word = plotting.word
    ordered, ticks = _rate_ticks(pts, lang)
    n_finite = sum(pt["request_rate_req_per_s"] is not None for pt in ordered)
    fig, axs = plotting.figure(plt, 3.8, ncols=2)
    for ax, key in zip(axs[0], ("ttft", "tpot")):
        for stat, style, fill in (("median", "o-", None), ("p99", "s--", "none")):  # hollow P99: a median
            ys = [pt[f"{stat}_{key}_ms"] for pt in ordered]                       # just below stays visible
            line, = ax.plot(range(n_finite), ys[:n_finite], style, mfc=fill, label=word(lang, stat))
            if n_finite < len(ordered):
                ax.plot([n_finite], ys[n_finite:], style[0], mfc=fill, color=line.get_color(), ms=8)
        if n_finite < len(ordered):
            ax.axvline(n_finite - 0.5, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(ordered)), ticks)
        ax.set_xlim(-0.4, len(ordered) - 0.6)
        values = [pt[f"{s}_{key}_ms"] for pt in ordered for s in ("median", "p99") if pt[f"{s}_{key}_ms"]]
        if values and max(values) > 5 * min(values):  # queueing at high rates: log keeps the low rates readable
            plotting.log_scale(ax, "y")
        ax.margins(y=0.12)
        ax.set_title(word(lang, key))
        ax.set_xlabel(word(lang, "rate_axis"))
        ax.set_ylabel(word(lang, f"{key}_ms"))
    fig.suptitle(f"{word(lang, 'lat_vs_rate')}\n{word(lang, 'workload', **workload)}")
    plotting.legend_below(fig, *axs[0][0].get_legend_handles_labels())
    return plotting.save(fig, path)


def _throughput_vs_concurrency(plt: Any, lang: str, pts: list[dict[str, Any]], workload: dict[str, Any],
                               path: Any) -> Any:
    word = plotting.word
    pts = sorted(pts, key=lambda pt: pt["max_concurrency"])
    xs, ys = [pt["max_concurrency"] for pt in pts], [pt["output_tok_per_s"] or 0 for pt in pts]
    fig, axs = plotting.figure(plt, 3.6)
    ax = axs[0][0]
    ax.plot(xs, ys, "o-")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(0, max(ys) * 1.15 if ys and max(ys) > 0 else 1)
    ax.set_xlabel(word(lang, "conc_axis"))
    ax.set_ylabel(word(lang, "tok_s", what=word(lang, "out_thr")))
    ax.set_title(f"{word(lang, 'thr_vs_conc')}\n{word(lang, 'workload', **workload)}")
    return plotting.save(fig, path)


CDF_LINES = 4  # lines per panel; more are unreadable at the card's width


def _cdf_groups(points: list[dict[str, Any]], lang: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(panel title, [(sweep, load label in the rows, legend label)]) per sweep: the rate sweep and
    the concurrency sweep, each thinned to CDF_LINES evenly spaced points (first and last kept);
    the main point alone when there is no sweep."""
    word = plotting.word
    rate, _ = _rate_ticks([pt for pt in points if pt["sweep"] == "rate"], lang)
    conc = sorted((pt for pt in points if pt["sweep"] == "concurrency"), key=lambda pt: pt["max_concurrency"])

    def label(pt: dict[str, Any]) -> str:
        if pt["sweep"] == "concurrency":
            return word(lang, "conc_n", k=pt["max_concurrency"])
        r = pt["request_rate_req_per_s"]
        return word(lang, "rate_n", r=f"{r:g}") if r is not None else word(lang, "rate_inf")

    def thin(pts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(pts) <= CDF_LINES:
            return pts
        return [pts[round(i * (len(pts) - 1) / (CDF_LINES - 1))] for i in range(CDF_LINES)]

    panels = [(word(lang, key), thin(pts)) for key, pts in (("by_rate", rate), ("by_conc", conc)) if pts]
    if not panels:
        panels = [(word(lang, "main_point"), [pt for pt in points if pt["sweep"] == "main"][:1])]
    return [(title, [(pt["sweep"], _load_label(pt), label(pt)) for pt in pts]) for title, pts in panels]


def _load_label(pt: dict[str, Any]) -> str:
    """The `load` field the point's rows carry ("rate=2", "rate=inf conc=4")."""
    return loadgen.LoadSpec(_rate(pt["request_rate_label"]), max_concurrency=pt.get("max_concurrency")).label()


def _ttft_cdf(plt: Any, lang: str, points: list[dict[str, Any]], rows: list[dict[str, Any]],
              workload: dict[str, Any], path: Any) -> Any:
    """One panel per sweep, each a subfigure with its legend below it (a CDF fills its corners)."""
    word = plotting.word
    df = pd.DataFrame(rows)
    groups = _cdf_groups(points, lang)
    fig = plt.figure(figsize=(plotting.WIDTH_IN, 4.2), layout="constrained")
    for sub, (title, lines) in zip(fig.subfigures(1, len(groups), squeeze=False)[0], groups):
        ax = sub.subplots()
        for sweep, load, label in lines:
            v = np.sort(df[(df["sweep"] == sweep) & (df["load"] == load)]["ttft_ms"].dropna().to_numpy())
            if len(v):
                ax.step(v, 100 * np.arange(1, len(v) + 1) / len(v), where="post", label=label)
        if df["ttft_ms"].max() > 10 * max(df["ttft_ms"].min(), 1e-3):  # queueing spreads TTFT over decades
            plotting.log_scale(ax, "x")
        ax.set_ylim(0, 102)
        ax.set_title(title)
        ax.set_xlabel(word(lang, "ttft_ms"))
        ax.set_ylabel(word(lang, "share_axis"))
        plotting.legend_below(sub, *ax.get_legend_handles_labels(), ncol=2)
    fig.suptitle(f"{word(lang, 'ttft_cdf')}\n{word(lang, 'workload', **workload)}")
    return plotting.save(fig, path)


def show_plots(result: ServingResult | None) -> list[str]:
    """Display the serving plots inline (a notebook helper; nothing to show if serving did not run)."""
    if result is None or not result.plots:
        raise SectionSkipped("no serving plots (the serving step did not run)")
    from IPython.display import Image, display

    for path in result.plots:
        display(Image(filename=path, width=plotting.WIDTH_IN * 100))  # the card's width, not the file's
    return result.plots

