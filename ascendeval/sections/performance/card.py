"""The performance section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ... import catalog, output_guard
from . import card_serving
from ...report.builder import CardBuilder, is_scalar, plots_of, table_of
from ...report.cells import fmt, get, md_table, opt
from ...report.guard import (
    guard_banner,
    guard_table,
    guard_title,
    invalid_figures,
    shown_invalid,
)
from ...report.text import L, metric_label
from ...report.verdicts import Summary, figure
from .metrics import PerformanceMetrics


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    m = b.open_part("performance")
    if m is None:
        return
    params = get(d.rec("performance"), "params.performance") or {}
    typed = d.metrics("performance")
    engine = opt(typed, "engine.engine") or "vllm"
    lat = m.get("latency")
    if isinstance(lat, dict):
        lp = params.get("latency") or {}
        guard_banner(b, m, ["latency"])
        b.add(f"### {L(lang, 'perf_latency')}: " + L(lang, "cond_latency", batch=lp.get("batch_size", "?"),
                                                      input_len=lp.get("input_len", "?"),
                                                      output_len=lp.get("output_len", "?")))
        b.kv_table("performance", lat, ["input_len", "output_len", "batch_size", "avg_latency_s", "p50_latency_s",
                                        "p90_latency_s", "p99_latency_s", "prompt_tok_per_s", "generation_tok_per_s"],
                   kinds=["latency"])
    e2e = m.get("e2e_latency")
    if isinstance(e2e, list) and e2e:
        b.add(f"### {L(lang, 'perf_e2e')}")
        keys = ["output_len", "mean_latency_s", "output_tok_per_s", "mean_ttft_ms"]
        b.add(md_table([metric_label(k, lang) for k in keys], [[fmt(r.get(k), k) for k in keys] for r in e2e]),
              b.source("performance", ["latency"]))
    thr = m.get("throughput")
    if isinstance(thr, dict):
        n = thr.get("num_requests") or 1
        guard_banner(b, m, ["throughput"])
        b.add(f"### {L(lang, 'perf_throughput')}: " + L(lang, "cond_throughput", num=n,
                                                         input_len=(thr.get("total_input_tokens") or 0) // n,
                                                         output_len=(thr.get("total_output_tokens") or 0) // n))
        b.kv_table("performance", thr)
    split = m.get("prefill_decode")
    if split:
        guard_banner(b, m, ["prefill_decode"])
        b.add(f"### {L(lang, 'perf_split')}")
        table_of(b, "performance", split)
    graph = m.get("graph_vs_eager")
    if isinstance(graph, dict) and (graph.get("eager") or graph.get("graph")):
        guard_banner(b, m, ["graph_vs_eager.eager", "graph_vs_eager.graph"])
        b.add(f"### {L(lang, 'perf_graph')}")
        keys = sorted({k for side in ("eager", "graph") for k, v in (graph.get(side) or {}).items() if is_scalar(v)})
        b.add(md_table([L(lang, "metric"), "eager", "graph", L(lang, "graph_gain")],
                       [(metric_label(k, lang), fmt(get(graph, f"eager.{k}"), k), fmt(get(graph, f"graph.{k}"), k),
                         _gain(k, get(graph, f"eager.{k}"), get(graph, f"graph.{k}"))) for k in keys]),
              L(lang, "graph_gain_note"), b.source("performance"))
    sm = m.get("serving_main")
    if isinstance(sm, dict):
        guard_banner(b, m, ["serving_main"])
        b.add(f"### {L(lang, 'perf_serving')}: "
              + serving_conditions(typed.serving_main, params.get("serving") or {}, engine, lang))
        b.kv_table("performance", sm, ["num_requests", "completed_count", "failed_count", "request_rate_label",
                                       "max_concurrency", "request_throughput_req_per_s", "output_tok_per_s",
                                       "peak_output_tok_per_s", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
                                       "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms",
                                       "median_e2el_ms", "p99_e2el_ms", "goodput_req_per_s"], kinds=["requests"])
        card_serving.slo_note(b, m)
        card_serving.clean_note(b, m.get("serving") or [sm])
        card_serving.client_note(b, m)
        _repeats_table(b, typed.serving_main)
    pts = m.get("serving")
    if isinstance(pts, list) and len(pts) > 1:
        keys = ["sweep", "request_rate_label", "max_concurrency", "completed_count", "request_throughput_req_per_s",
                "output_tok_per_s", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_e2el_ms"]
        # imported here: the load generator needs aiohttp, and the card renders (and the section
        # registry imports this module) where only the engine stack is installed (device_check.py)
        from ... import loadgen

        guard_banner(b, m, [loadgen.point_figure(pt) for pt in pts if pt.get("sweep") != "main"])
        b.add(md_table([metric_label(k, lang) for k in keys] + [L(lang, "tpot_per_repeat"), L(lang, "ci_median_tpot")],
                       [[fmt(p.get(k), k, lang) for k in keys]
                        + [_spread_text(pt, "median_tpot_ms", lang), card_serving.ci_cell(p, "median_tpot_ms", lang)]
                        for p, pt in zip(pts, typed.serving or [])]),
              b.source("performance", ["requests"]))
        card_serving.indistinguishable_note(b, m)
    _agreement_table(b, typed.serving_agreement)
    if isinstance(pts, list):
        card_serving.telemetry_table(b, pts)
    card_serving.capacity_part(b, m)
    card_serving.definitions_part(b, m)
    mem = m.get("memory")
    if isinstance(mem, dict):
        b.add(f"### {L(lang, 'perf_memory')}")
        b.kv_table("performance", mem)
    guard_table(b, "performance", m)
    plots_of(b, "performance")


def _repeats_table(b: CardBuilder, point: Any) -> None:
    """The main point's repeats side by side: the spread a reader should allow any serving figure."""
    reps = point.repeat_figures if point is not None else None
    if not reps or len(reps) < 2:
        return
    keys = ["repeat", "duration_s", "output_tok_per_s", "median_ttft_ms", "median_tpot_ms", "p99_tpot_ms"]
    rows = [[str(r.repeat + 1)] + [fmt(getattr(r, k), k, b.lang) for k in keys[1:]] for r in reps]
    b.add(L(b.lang, "repeats_intro", n=len(reps)),
          md_table([metric_label(k, b.lang) for k in keys], rows), b.source("performance", ["requests"]))


def _spread_text(point: Any, key: str, lang: str) -> str:
    """'lo – hi' of one figure over a point's repeats; blank with a single repeat."""
    vals = [getattr(r, key) for r in point.repeat_figures or [] if getattr(r, key) is not None]
    if len(vals) < 2:
        return ""
    return f"{fmt(min(vals), key, lang)} – {fmt(max(vals), key, lang)}"


def _agreement_table(b: CardBuilder, agreement: Any) -> None:
    """The main point against the sweep point with its settings: does one setting give one figure?"""
    if not agreement:
        return
    lang = b.lang
    head = [L(lang, "metric"), metric_label("first_point", lang), metric_label("second_point", lang),
            metric_label("difference", lang), metric_label("repeat_spread", lang), metric_label("within_noise", lang)]
    rows = [[metric_label(a.compared_metric, lang),
             f"{fmt(a.first_value, a.compared_metric, lang)} ({point_name(a.first_point, lang)})",
             f"{fmt(a.second_value, a.compared_metric, lang)} ({point_name(a.second_point, lang)})",
             fmt(a.difference, a.compared_metric, lang),
             fmt(a.repeat_spread, a.compared_metric, lang) if a.repeat_spread is not None else L(lang, "not_measured"),
             fmt(a.within_noise, "within_noise", lang)] for a in agreement]
    off = [a for a in agreement if a.within_noise is False]
    b.add(f"#### {metric_label('serving_agreement', lang)}", L(lang, "agreement_intro"), md_table(head, rows),
          L(lang, "agreement_off" if off else "agreement_ok"), b.source("performance"))


def point_name(point: str, lang: str) -> str:
    """A load point as the records name it ("rate rate=inf": sweep, then load) in the card's words."""
    sweep, _, load = point.partition(" ")
    return fmt(sweep, "sweep", lang) + (f" {load}" if load else "")


def agreement_warning(m: PerformanceMetrics, lang: str) -> str:
    """The deciding figure of a `warn`: the first figure that differed between two measurements of
    the same settings by more than the spread of their repeats; '' when none did."""
    off = [a for a in m.serving_agreement or [] if a.within_noise is False]
    if not off:
        return ""
    a = off[0]
    return L(lang, "agreement_warn", metric=metric_label(a.compared_metric, lang),
             first=fmt(a.first_value, a.compared_metric, lang), second=fmt(a.second_value, a.compared_metric, lang),
             spread=fmt(a.repeat_spread, a.compared_metric, lang))


def _gain(key: str, eager: Any, graph: Any) -> str:
    """How many times better graph mode is than eager on one figure (by the catalog's `better`
    direction: 2.00x = twice the throughput or half the latency); blank where neither is better."""
    metric = catalog.get(key)
    if metric is None or metric.better is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          and v > 0 for v in (eager, graph)):
        return ""
    return f"{(graph / eager if metric.better == 'higher' else eager / graph):.2f}x"


def serving_conditions(point: Any, serving_params: dict[str, Any], engine: str, lang: str) -> str:
    """The workload a serving figure was measured under, said in full."""
    if point.max_concurrency:
        load = L(lang, "load_concurrency", n=point.max_concurrency)
    elif point.request_rate_req_per_s is None:
        load = L(lang, "load_all_at_once")
    else:
        load = L(lang, "load_rate", rate=fmt(point.request_rate_req_per_s, "request_rate_req_per_s", lang))
    repeats = len(point.repeat_figures or []) or 1
    text = L(lang, "cond_serving", input_len=serving_params.get("input_len", "?"),
             output_len=serving_params.get("output_len", "?"), num=point.num_requests // repeats, load=load,
             engine=engine)
    return text + (L(lang, "cond_repeats", n=repeats) if repeats > 1 else "")


def summary(m: PerformanceMetrics, params: dict[str, Any], lang: str) -> Summary:
    """Figures only (information) unless the params set a serving SLO, whose goodput then shows."""
    engine = opt(m, "engine.engine") or "vllm"
    figures = []
    sentence = ""
    sm = m.serving_main
    if sm is not None:
        cond = serving_conditions(sm, params.get("serving") or {}, engine, lang)
        shown = shown_invalid(m, "serving_main", lang)
        for key in ("output_tok_per_s", "median_ttft_ms", "median_tpot_ms", "p99_ttft_ms"):
            figures.append(figure(key, getattr(sm, key), cond, lang, shown=shown))
        if sm.goodput_req_per_s is not None:
            slo = m.serving_slo
            slo_cond = cond + (f" · {card_serving.slo_text(slo.model_dump())}" if slo is not None else "")
            figures.append(figure("goodput_req_per_s", sm.goodput_req_per_s, slo_cond, lang, shown=shown))
    cap = m.capacity_slo
    if cap is not None:
        cap_cond = L(lang, "capacity_cond", share=f"{cap.target_share:.0%}", slo=card_serving.slo_text(cap.slo))
        for kind, key in (("rate", "capacity_rate_req_per_s"), ("concurrency", "capacity_concurrency")):
            res = getattr(cap, kind)
            if res is not None:
                shown = None if res.highest_passing is not None else L(lang, "capacity_unmet", why=fmt(res.stop_reason, "stop_reason", lang))
                figures.append(figure(key, res.highest_passing, cap_cond, lang, shown=shown))
        sentence = L(lang, "s_perf", tok=fmt(sm.output_tok_per_s, "output_tok_per_s", lang),
                     ttft=fmt(sm.median_ttft_ms, "median_ttft_ms", lang) + " ms",
                     tpot=fmt(sm.median_tpot_ms, "median_tpot_ms", lang) + " ms", cond=cond)
    lat = m.latency
    if lat is not None:
        lp = params.get("latency") or {}
        figures.append(figure("avg_latency_s", lat.avg_latency_s,
                              L(lang, "cond_latency", batch=lp.get("batch_size", "?"), input_len=lp.get("input_len", "?"),
                                output_len=lp.get("output_len", "?")), lang, shown=shown_invalid(m, "latency", lang)))
    thr = m.throughput
    if thr is not None:
        n = thr.num_requests
        figures.append(figure("output_tok_per_s", thr.output_tok_per_s,
                              L(lang, "cond_throughput", num=n, input_len=thr.total_input_tokens // max(n, 1),
                                output_len=thr.total_output_tokens // max(n, 1)), lang,
                              shown=shown_invalid(m, "throughput", lang)))
    # a figure that timed degenerate outputs is no measurement: the section fails on it
    bad = invalid_figures(m, ["serving_main", "latency", "throughput", "prefill_decode", "graph_vs_eager.eager",
                       "graph_vs_eager.graph"] + [f for f in (m.output_guard or {}) if f.startswith("serving.")], lang)
    if bad:
        if sm is not None and output_guard.invalid_reason(m, "serving_main", lang) is not None:
            sentence = ""
        note = L(lang, "list_sep").join(L(lang, "guard_fail_note", figure=guard_title(f, lang), reason=r)
                                        for f, r in bad)
        return Summary("fail", note, figures, sentence)
    warning = agreement_warning(m, lang)
    if warning:  # the figures above are not reproducible within this run: say so where they are read
        return Summary("warn", warning, figures, sentence)
    return Summary("info", L(lang, "no_slo") if sm is None or sm.goodput_req_per_s is None else "", figures, sentence)
