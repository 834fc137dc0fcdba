"""The serving benchmark against an HTTP server (`vllm bench serve` semantics): the main load point,
rate and concurrency sweeps, and their plots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ... import device as device_mod
from ... import loadgen, plotting, records, uncertainty
from ...context import SectionRun, SectionSkipped
from ...output_guard import OutputGuard
from . import points as points_mod
from . import timeline
from .setup import Plan
from .slo_capacity import Slo, effective_slo


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


def serving(run: SectionRun, p: Plan, guard: OutputGuard | None = None) -> ServingResult:
    """Main load point, then the request-rate sweep and the concurrency sweep, against a served
    model; rows after every point go to records/performance.requests.jsonl. `guard` keeps the timed
    requests' outputs of each point (figures `serving_main`, `serving.<sweep> <load>`)."""
    c = p.conf.serving
    if not c.enabled:
        raise SectionSkipped("serving.enabled is false", zh="serving.enabled 为 false")
    if c.url:  # this section's own endpoint wins over the run's server
        return _serve_against(run, p, c.url.rstrip("/"), guard)
    if run.cfg.target.engine == "hf" and not run.cfg.server.url:
        raise SectionSkipped("not applicable: the hf engine has no server (set performance.serving.url to "
                             "benchmark an existing OpenAI-compatible endpoint)",
                             zh="不适用：hf 引擎没有服务（如需对已有的 OpenAI 兼容端点做基准测试，"
                             "请设置 performance.serving.url）")
    # params' server.url, else the run's shared server (ASCENDEVAL_SHARED_SERVER_URL), else one
    # started here for this step and stopped after it
    with run.served("serving") as base:
        return _serve_against(run, p, base, guard)


def make_client(run: SectionRun, p: Plan, base_url: str, guard: OutputGuard | None = None) -> points_mod.Client:
    """The client every load point of a step sends through (points.Client)."""
    c = p.conf.serving
    name = loadgen.served_model(base_url, run.cfg.server.served_model_name, run.cfg.server.api_key)
    # a vLLM server (the run's own or a running deployment) returns the generated ids
    # (return_token_ids; a vLLM too old for it ignores the field) for the output guard; others
    # are re-tokenized from the streamed text
    ep = loadgen.Endpoint(base_url, name, api=c.api, api_key=run.cfg.server.api_key, timeout_s=c.timeout_s,
                          ignore_eos=c.ignore_eos, transport=c.loadgen.transport,
                          request_token_ids=guard is not None and run.cfg.server.kind == "vllm" and not c.url)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model().path, trust_remote_code=run.cfg.model.trust_remote_code)
    return points_mod.Client(ep, tok, c, server_pid=device_mod.listening_pid(base_url),
                             device_kind=run.cfg.target.device, telemetry_interval_s=c.telemetry_interval_s)


def _serve_against(run: SectionRun, p: Plan, base_url: str, guard: OutputGuard | None = None) -> ServingResult:
    c = p.conf.serving
    client = make_client(run, p, base_url, guard)
    tok = client.tok
    slo = effective_slo(run, client)
    n_sweep = c.sweep_num_prompts or c.num_prompts
    plan_points = [("main", _rate(c.request_rate), c.max_concurrency, c.num_prompts)]
    plan_points += [("rate", _rate(r), c.max_concurrency, n_sweep) for r in c.request_rates]
    plan_points += [("concurrency", math.inf, k, n_sweep) for k in c.concurrencies]
    runs: list[list[loadgen.LoadRun]] = [[] for _ in plan_points]
    repeats: list[list[dict[str, Any]]] = [[] for _ in plan_points]
    points: list[dict[str, Any]] = []
    all_rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    # Rounds: every point once per round, `repeats` rounds. A slow phase of the host (on a small
    # CPU host, identical points measured minutes apart differed up to 2x in TPOT) is then spread
    # over all points instead of landing on one, and the repeats of a point measure the run's noise.
    # After the first round the order is shuffled (seeded): a point measured right after a heavy
    # one read slower in every round of one demo, and a fixed order would make that a bias.
    for k in range(c.repeats):
        order = range(len(plan_points)) if k == 0 else np.random.default_rng(c.seed + k).permutation(
            len(plan_points))
        for i in (int(x) for x in order):
            sweep, rate, conc, n = plan_points[i]
            spec = loadgen.LoadSpec(rate, c.burstiness, conc, c.seed + k)
            # `warmup_load`: the first point is preceded by its own load once, untimed, for servers
            # that build kernels or capture graphs per batch shape on first use.
            as_load = c.warmup_load and i == 0 and k == 0
            n_warm = n if as_load else c.warmup_requests
            got = client.measure(spec, n, c.seed + 100 + i + 1000 * k, n_warm, as_load=as_load)
            lr = got.run
            runs[i].append(lr)
            if guard is not None:  # greedy (the client sends temperature 0)
                guard.keep(loadgen.guard_figure(sweep, spec.label()),
                           loadgen.guard_outputs(lr.results, got.prompts, tok, c.api),
                           sampled=False, ignore_eos=c.ignore_eos)
            one = lr.metrics(slo.ms if slo else None)
            repeats[i].append({"repeat": k, **{f: one[f] for f in REPEAT_FIGURES}, **got.clean,
                               "telemetry": got.telemetry})
            point = _pooled_point(runs[i], repeats[i], sweep, slo)
            if k == 0:
                points.append(point)
            else:
                points[i] = point
            all_rows += lr.rows(sweep=sweep, repeat=k)
            samples += [{**smp, "sweep": sweep, "load": spec.label(), "repeat": k} for smp in got.samples]
            run.save_rows("requests", all_rows)  # after every measurement: a crash later keeps these
            if samples:
                run.save_rows("telemetry", samples)
            run.add("serving", points)
            if one["failed_rate"] and one["failed_rate"] > c.max_failed_fraction:
                first = next(iter(one["errors"]), "?")
                raise ServingFailed(f"{one['failed_count']}/{one['num_requests']} requests failed at {spec.label()} "
                                    f"(repeat {k + 1}; allowed fraction {c.max_failed_fraction}); first error: {first}")
    for pt, lr in zip(points, runs):  # the intervals once every repeat is in
        pt["ci"] = point_intervals(lr)
    run.add("serving", points)
    run.add("serving_main", {k: v for k, v in points[0].items() if k != "errors"})
    close = indistinguishable(points)
    if close:
        run.add("serving_indistinguishable", close)
    agreement = same_settings_agreement(points)
    if agreement:
        run.add("serving_agreement", agreement)
    plots = serving_plots(run, points, all_rows, samples)
    return ServingResult(points, plots)


# the figures kept per repeat: what the card compares and the noise band is taken over
REPEAT_FIGURES = ("duration_s", "completed_count", "output_tok_per_s", "median_ttft_ms", "median_tpot_ms",
                  "p99_tpot_ms")
# the figures compared when the same settings were measured twice in one run
AGREEMENT_FIGURES = ("output_tok_per_s", "median_ttft_ms", "median_tpot_ms")


def _pooled_point(runs: list[loadgen.LoadRun], repeats: list[dict[str, Any]], sweep: str,
                  slo: Slo | None) -> dict[str, Any]:
    """A point's figures over all its repeats' requests (durations summed), with each repeat's own
    figures kept beside them, and how the point was kept clean."""
    pooled = loadgen.LoadRun.pooled(runs)
    m = pooled.metrics(slo.ms if slo else None)
    waits = [r["settle_wait_s"] for r in repeats if r["settle_wait_s"] is not None]
    busy = [r["host_cpu_busy_before"] for r in repeats if r["host_cpu_busy_before"] is not None]
    m["settle_wait_s"] = sum(waits) if waits else None
    m["host_cpu_busy_before"] = max(busy) if busy else None
    resets = [r.get("prefix_cache_reset") for r in repeats]
    # True: reset before every repeat; False: a reset was refused; None: the server offers none
    m["prefix_cache_reset"] = False if False in resets else (None if None in resets else True)
    m["prefix_cache_reset_note"] = next((r.get("prefix_cache_reset_note") for r in repeats
                                         if r.get("prefix_cache_reset") is not True), None)
    m["input_len_requested"] = repeats[0].get("input_len_requested")
    lows = [r["input_tokens_actual_min"] for r in repeats if r.get("input_tokens_actual_min") is not None]
    highs = [r["input_tokens_actual_max"] for r in repeats if r.get("input_tokens_actual_max") is not None]
    m["input_tokens_actual_min"] = min(lows) if lows else None
    m["input_tokens_actual_max"] = max(highs) if highs else None
    m["telemetry"] = points_mod.merge_telemetry([r.get("telemetry") for r in repeats])
    m["client"] = pooled.client or None  # the client's own figures, the worst repeat's (loadgen.client_stats)
    m["sweep"] = sweep
    m["repeat_figures"] = list(repeats)
    return m


# request-level medians with a bootstrap interval; run-level figures with a t interval over repeats
CI_MEDIANS = ("ttft", "tpot", "e2el")
CI_RUN_FIGURES = ("output_tok_per_s",)


def point_intervals(runs: list[loadgen.LoadRun]) -> dict[str, Any]:
    """95 % intervals of a point's medians and throughput over its repeats (uncertainty.py)."""
    out: dict[str, Any] = {}
    for key in CI_MEDIANS:
        groups = [[v * 1000.0 for v in (getattr(r, f"{key}_s") for r in lr.results if r.success) if v is not None]
                  for lr in runs]
        out[f"median_{key}_ms"] = uncertainty.median_ci(groups)
    for key in CI_RUN_FIGURES:
        out[key] = uncertainty.mean_ci([lr.metrics()[key] for lr in runs])
    return {"level": uncertainty.CI_LEVEL, "repeats": len(runs),
            "method": "two-stage bootstrap (repeats, then requests) for medians; Student-t over repeats for "
                      "throughput" if len(runs) > 1 else "bootstrap over requests (one repeat: run-to-run "
                      "noise not measured)",
            "intervals": {k: list(v) if v is not None else None for k, v in out.items()}}


def indistinguishable(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neighbouring points of each sweep whose intervals overlap on a figure: the run cannot tell
    them apart there (a trend between them is within the noise)."""
    out = []
    for sweep, order_key in (("rate", lambda pt: pt["request_rate_req_per_s"] or math.inf),
                             ("concurrency", lambda pt: pt["max_concurrency"] or 0)):
        pts = sorted((pt for pt in points if pt["sweep"] == sweep and pt.get("ci")), key=order_key)
        for a, b in zip(pts, pts[1:]):
            for key in (*[f"median_{k}_ms" for k in CI_MEDIANS], *CI_RUN_FIGURES):
                ia, ib = a["ci"]["intervals"].get(key), b["ci"]["intervals"].get(key)
                if uncertainty.overlap(ia, ib):
                    out.append({"sweep": sweep, "first_point": _load_label(a), "second_point": _load_label(b),
                                "compared_metric": key, "first_value": a.get(key), "second_value": b.get(key),
                                "first_interval": ia, "second_interval": ib})
    return out


def repeat_spread(point: dict[str, Any], key: str) -> tuple[float, float] | None:
    """(lowest, highest) of one figure over a point's repeats; None with fewer than two repeats."""
    vals = [r.get(key) for r in point.get("repeat_figures") or []]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return (min(vals), max(vals)) if len(vals) >= 2 else None


def same_settings_agreement(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a sweep point repeats the main point's settings (rate, burstiness, concurrency and
    request count), whether the two agree: the difference of each figure against the run's noise,
    the widest spread of that figure over either point's repeats. Agreement is None (not decided)
    with a single repeat: there is no noise to compare against."""
    def settings(pt: dict[str, Any]) -> tuple:
        return pt["request_rate_label"], pt["burstiness"], pt["max_concurrency"], pt["num_requests"]

    main = points[0]
    out = []
    for pt in points[1:]:
        if settings(pt) != settings(main):
            continue
        for key in AGREEMENT_FIGURES:
            a, b = main.get(key), pt.get(key)
            if a is None or b is None or a + b <= 0:
                continue
            spreads = [s for s in (repeat_spread(main, key), repeat_spread(pt, key)) if s is not None]
            noise = max((hi - lo for lo, hi in spreads), default=None)
            out.append({"compared_metric": key, "first_point": "main", "second_point": f"{pt['sweep']} {_load_label(pt)}",
                        "first_value": a, "second_value": b, "difference": abs(a - b), "repeat_spread": noise,
                        "within_noise": None if noise is None else abs(a - b) <= noise})
    return out


def serving_plots(run: SectionRun, points: list[dict[str, Any]], rows: list[dict[str, Any]],
                  samples: list[dict[str, Any]] | None = None) -> list[str]:
    """TTFT/TPOT vs request rate, throughput vs concurrency, TTFT distributions, the main run's
    request timeline (with telemetry `samples`, else the run's telemetry rows) and the Pareto
    front; PNGs under artifacts/."""
    c = run.conf.serving
    k = max((len(pt.get("repeat_figures") or []) for pt in points), default=1) or 1
    n = max((pt.get("num_requests") or 0 for pt in points), default=0) // k
    workload = {"inp": c.input_len, "out": c.output_len, "n": n, "k": k}
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
    if samples is None:
        samples = records.load_rows(run.run_dir, "performance", "telemetry")
    for made in (timeline.timeline_plot(run, rows, samples, run.artifact_path("perf_request_timeline.png")),
                 timeline.pareto_plot(run, points, run.cfg.target.count or 1, run.artifact_path("perf_pareto.png"))):
        if made is not None:
            out.append(made)
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
    infinite rate a separate, unconnected point at the right. The y range is the finite rates':
    an infinite-rate value above it (its queueing) is drawn at the top edge as an arrow with its
    figure, so it neither flattens the finite rates nor reads as a trend of theirs."""
    word = plotting.word
    ordered, ticks = _rate_ticks(pts, lang)
    n_finite = sum(pt["request_rate_req_per_s"] is not None for pt in ordered)
    fig, axs = plotting.figure(plt, 3.8, ncols=2)
    for ax, key in zip(axs[0], ("ttft", "tpot")):
        finite_values = [pt[f"{s}_{key}_ms"] for pt in ordered[:n_finite] for s in ("median", "p99")
                         if pt[f"{s}_{key}_ms"]]
        log = bool(finite_values) and max(finite_values) > 5 * min(finite_values)  # queueing at high rates
        inf_values = [pt[f"{s}_{key}_ms"] for pt in ordered[n_finite:] for s in ("median", "p99")
                      if pt[f"{s}_{key}_ms"]]
        bottom, top = _rate_panel_range(finite_values, inf_values, log)
        for stat, style, fill in (("median", "o-", None), ("p99", "s--", "none")):  # hollow P99: a median
            ys = [pt[f"{stat}_{key}_ms"] for pt in ordered]                       # just below stays visible
            line, = ax.plot(range(n_finite), ys[:n_finite], style, mfc=fill, label=word(lang, stat))
            for y in ys[n_finite:]:
                if y is not None and top is not None and y > top:  # off the finite rates' scale
                    x = n_finite + (-0.1 if stat == "median" else 0.1)
                    ax.plot([x], [top], "^", color=line.get_color(), ms=8, clip_on=False)
                    ax.annotate(f"{y:,.3g}", (x, top), textcoords="offset points", ha="center",
                                xytext=(0, -14), fontsize=8, color=line.get_color())
                else:
                    ax.plot([n_finite], [y], style[0], mfc=fill, color=line.get_color(), ms=8)
            if stat == "median":  # the median's range over the repeats: the noise a trend must exceed
                spans = [(x, repeat_spread(pt, f"median_{key}_ms")) for x, pt in enumerate(ordered)]
                spans = [(x, sp) for x, sp in spans if sp is not None]
                if spans:
                    ax.vlines([x for x, _ in spans], [lo for _, (lo, _) in spans], [hi for _, (_, hi) in spans],
                              color=line.get_color(), alpha=0.35, lw=6, label=word(lang, "repeat_range"))
        if n_finite < len(ordered):
            ax.axvline(n_finite - 0.5, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(ordered)), ticks)
        ax.set_xlim(-0.4, len(ordered) - 0.6)
        if log:
            plotting.log_scale(ax, "y")
        if top is not None:
            ax.set_ylim(bottom, top)
        else:
            ax.margins(y=0.12)
        ax.set_title(word(lang, key))
        ax.set_xlabel(word(lang, "rate_axis"))
        ax.set_ylabel(word(lang, f"{key}_ms"))
    fig.suptitle(f"{word(lang, 'lat_vs_rate')}\n{word(lang, 'workload', **workload)}")
    plotting.legend_below(fig, *axs[0][0].get_legend_handles_labels())
    return plotting.save(fig, path)


def _rate_panel_range(finite: list[float], inf: list[float], log: bool) -> tuple[float | None, float | None]:
    """(bottom, top) of a rate panel: the finite rates' values with a margin, widened to take in
    an infinite-rate value below them or at most twice their span above them (factors on a log axis);
    a value further up stays off the range (drawn at the top edge). (None, None) without values."""
    if not finite:
        return None, None
    lo, hi = min(finite), max(finite)
    reach = hi * (hi / lo) ** 2 if log else hi + 2 * (hi - lo)
    shown = finite + [y for y in inf if y <= reach]
    lo, hi = min(shown), max(shown)
    if log:
        return lo / 1.3, hi * 1.3
    pad = max(hi - lo, hi * 0.1) * 0.15
    return max(0.0, lo - pad), hi + pad


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


@dataclass
class DefinitionsResult:
    record: dict[str, Any]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.record["tools"])


def tool_definitions(run: SectionRun) -> DefinitionsResult:
    """The main point's raw rows under every benchmark tool's definitions (metric_definitions.py):
    TTFT, TPOT, ITL and E2EL as vLLM, SGLang, GuideLLM, AIPerf and EvalScope compute them, and
    where those definitions give different numbers on this trace."""
    from ... import metric_definitions

    rows = [r for r in records.load_rows(run.run_dir, "performance", "requests") if r.get("sweep") == "main"]
    if not rows:
        raise SectionSkipped("no serving rows (the serving step did not run)",
                             zh="没有服务化请求记录（serving 步骤未运行）")
    figures = metric_definitions.per_tool_figures(rows)
    rec = {"point": "main", "tools": figures, "findings": metric_definitions.disagreements(rows, figures)}
    run.add("serving_definitions", rec)
    return DefinitionsResult(rec)


def show_plots(result: Any) -> list[str]:
    """Display a step's plots inline (`result.plots`: the serving or capacity step's; a notebook
    helper; nothing to show if that step did not run)."""
    if result is None or not result.plots:
        raise SectionSkipped("no plots (the step that draws them did not run)",
                             zh="没有图（绘制它们的步骤未运行）")
    from IPython.display import Image, display

    for path in result.plots:
        display(Image(filename=path, width=plotting.WIDTH_IN * 100))  # the card's width, not the file's
    return result.plots

