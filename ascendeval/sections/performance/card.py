"""The performance section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ... import catalog
from ...report.builder import CardBuilder, is_scalar, plots_of, table_of
from ...report.cells import fmt, get, md_table, opt
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
        b.add(f"### {L(lang, 'perf_throughput')}: " + L(lang, "cond_throughput", num=n,
                                                         input_len=(thr.get("total_input_tokens") or 0) // n,
                                                         output_len=(thr.get("total_output_tokens") or 0) // n))
        b.kv_table("performance", thr)
    split = m.get("prefill_decode")
    if split:
        b.add(f"### {L(lang, 'perf_split')}")
        table_of(b, "performance", split)
    graph = m.get("graph_vs_eager")
    if isinstance(graph, dict) and (graph.get("eager") or graph.get("graph")):
        b.add(f"### {L(lang, 'perf_graph')}")
        keys = sorted({k for side in ("eager", "graph") for k, v in (graph.get(side) or {}).items() if is_scalar(v)})
        b.add(md_table([L(lang, "metric"), "eager", "graph", L(lang, "graph_gain")],
                       [(metric_label(k, lang), fmt(get(graph, f"eager.{k}"), k), fmt(get(graph, f"graph.{k}"), k),
                         _gain(k, get(graph, f"eager.{k}"), get(graph, f"graph.{k}"))) for k in keys]),
              L(lang, "graph_gain_note"), b.source("performance"))
    sm = m.get("serving_main")
    if isinstance(sm, dict):
        b.add(f"### {L(lang, 'perf_serving')}: "
              + serving_conditions(typed.serving_main, params.get("serving") or {}, engine, lang))
        b.kv_table("performance", sm, ["num_requests", "completed_count", "failed_count", "request_rate_label",
                                       "max_concurrency", "request_throughput_req_per_s", "output_tok_per_s",
                                       "peak_output_tok_per_s", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
                                       "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms",
                                       "median_e2el_ms", "p99_e2el_ms", "goodput_req_per_s"], kinds=["requests"])
    pts = m.get("serving")
    if isinstance(pts, list) and len(pts) > 1:
        keys = ["sweep", "request_rate_label", "max_concurrency", "completed_count", "request_throughput_req_per_s",
                "output_tok_per_s", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_e2el_ms"]
        b.add(md_table([metric_label(k, lang) for k in keys], [[fmt(p.get(k), k) for k in keys] for p in pts]),
              b.source("performance", ["requests"]))
    mem = m.get("memory")
    if isinstance(mem, dict):
        b.add(f"### {L(lang, 'perf_memory')}")
        b.kv_table("performance", mem)
    plots_of(b, "performance")



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
    return L(lang, "cond_serving", input_len=serving_params.get("input_len", "?"),
             output_len=serving_params.get("output_len", "?"), num=point.num_requests, load=load, engine=engine)


def summary(m: PerformanceMetrics, params: dict[str, Any], lang: str) -> Summary:
    """Figures only (information) unless the params set a serving SLO, whose goodput then shows."""
    engine = opt(m, "engine.engine") or "vllm"
    figures = []
    sentence = ""
    sm = m.serving_main
    if sm is not None:
        cond = serving_conditions(sm, params.get("serving") or {}, engine, lang)
        for key in ("output_tok_per_s", "median_ttft_ms", "median_tpot_ms", "p99_ttft_ms"):
            figures.append(figure(key, getattr(sm, key), cond, lang))
        if sm.goodput_req_per_s is not None:
            figures.append(figure("goodput_req_per_s", sm.goodput_req_per_s, cond, lang))
        sentence = L(lang, "s_perf", tok=fmt(sm.output_tok_per_s, "output_tok_per_s", lang),
                     ttft=fmt(sm.median_ttft_ms, "median_ttft_ms", lang) + " ms",
                     tpot=fmt(sm.median_tpot_ms, "median_tpot_ms", lang) + " ms", cond=cond)
    lat = m.latency
    if lat is not None:
        lp = params.get("latency") or {}
        figures.append(figure("avg_latency_s", lat.avg_latency_s,
                              L(lang, "cond_latency", batch=lp.get("batch_size", "?"), input_len=lp.get("input_len", "?"),
                                output_len=lp.get("output_len", "?")), lang))
    thr = m.throughput
    if thr is not None:
        n = thr.num_requests
        figures.append(figure("output_tok_per_s", thr.output_tok_per_s,
                              L(lang, "cond_throughput", num=n, input_len=thr.total_input_tokens // max(n, 1),
                                output_len=thr.total_output_tokens // max(n, 1)), lang))
    return Summary("info", L(lang, "no_slo") if sm is None or sm.goodput_req_per_s is None else "", figures, sentence)
