"""The performance section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from ...report.builder import CardBuilder, is_scalar, plots_of, table_of
from ...report.cells import fmt, get, md_table
from ...report.text import L, metric_label


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    b.add(f"## {L(lang, 'sec_performance')}")
    if not b.status_line("performance"):
        return
    m = d.rec("performance")["metrics"]
    lat = m.get("latency")
    if isinstance(lat, dict):
        b.add(f"### {L(lang, 'perf_latency')}")
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
        b.add(f"### {L(lang, 'perf_throughput')}")
        b.kv_table("performance", thr)
    split = m.get("prefill_decode")
    if split:
        b.add(f"### {L(lang, 'perf_split')}")
        table_of(b, "performance", split)
    graph = m.get("graph_vs_eager")
    if isinstance(graph, dict) and (graph.get("eager") or graph.get("graph")):
        b.add(f"### {L(lang, 'perf_graph')}")
        keys = sorted({k for side in ("eager", "graph") for k, v in (graph.get(side) or {}).items() if is_scalar(v)})
        b.add(md_table([L(lang, "metric"), "eager", "graph"],
                       [(metric_label(k, lang), fmt(get(graph, f"eager.{k}"), k), fmt(get(graph, f"graph.{k}"), k))
                        for k in keys]), b.source("performance"))
    sm = m.get("serving_main")
    if isinstance(sm, dict):
        b.add(f"### {L(lang, 'perf_serving')}")
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

