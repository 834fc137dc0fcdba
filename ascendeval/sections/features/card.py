"""The features section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ...report.builder import CardBuilder, plots_of, table_of
from ...report.cells import fmt, opt
from ...report.guard import (
    guard_banner,
    guard_table,
    guard_title,
    invalid_figures,
    shown_invalid,
)
from ...report.text import L, metric_label
from ...report.verdicts import Summary, figure
from .metrics import FeaturesMetrics


def render(b: CardBuilder) -> None:
    lang = b.lang
    metrics = b.open_part("features")
    if metrics is None:
        return
    m = {k: v for k, v in metrics.items() if k not in ("steps", "engine_starts", "output_guard")}
    for k, v in m.items():
        b.add(f"### {metric_label(k, lang)}")
        guard_banner(b, metrics, [k])
        table_of(b, "features", v if isinstance(v, (dict, list)) else {k: v})
    guard_table(b, "features", metrics)
    plots_of(b, "features")



def summary(m: FeaturesMetrics, params: dict[str, Any], lang: str) -> Summary:
    """What each feature buys, as measured speed-ups with their conditions (information)."""
    figures = []
    pc = m.prefix_caching
    if pc is not None and pc.ttft_speedup is not None:
        figures.append(figure("ttft_speedup", pc.ttft_speedup,
                              L(lang, "cond_prefix", n=pc.num_prompts, len=pc.prompt_len, shared=pc.shared_prefix_len), lang,
                              shown=shown_invalid(m, "prefix_caching", lang)))
    ps = m.prefix_caching_served
    if ps is not None and ps.ttft_speedup is not None:
        figures.append(figure("ttft_speedup", ps.ttft_speedup,
                              L(lang, "cond_prefix_served", n=ps.num_prompts, len=ps.prompt_len,
                                shared=ps.shared_prefix_len), lang, shown=shown_invalid(m, "prefix_caching_served", lang)))
    sv = m.speculative_server
    if sv is not None:
        figures.append(figure("acceptance_rate", sv.acceptance_rate, L(lang, "cond_spec_server", n=sv.num_prompts),
                              lang, shown=shown_invalid(m, "speculative_server", lang)))
    ss = m.speculative_served
    if ss is not None and ss.e2el_speedup is not None:
        cond = L(lang, "cond_spec_served", method="ngram", n=ss.num_prompts,
                 k=opt(m, "speculative.ngram.speculative_config.num_speculative_tokens") or "?")
        shown = shown_invalid(m, "speculative_served", lang)
        figures.append(figure("e2el_speedup", ss.e2el_speedup, cond, lang, shown=shown))
        figures.append(figure("acceptance_rate", opt(ss, "ngram.acceptance_rate"), cond, lang, shown=shown))
    cap = m.capacity
    if cap is not None and cap.kv_max_concurrency_at_max_model_len is not None:
        max_len = opt(m, "main_engine.max_model_len")
        figures.append(figure("kv_max_concurrency_at_max_model_len", cap.kv_max_concurrency_at_max_model_len,
                              L(lang, "cond_capacity", tokens=fmt(cap.kv_cache_tokens, "kv_cache_tokens", lang),
                                len=fmt(max_len, "seq_len", lang)), lang, shown=shown_invalid(m, "capacity", lang)))
    # the sentence names the speed-ups (the first figure of each feature that has one)
    speedups = [f for f in figures if f.label in {metric_label(k, lang) for k in ("ttft_speedup", "e2el_speedup")}]
    items = L(lang, "list_sep").join(f"{f.label} {f.value}" for f in speedups)
    sentence = L(lang, "s_features", items=items) if items else ""
    # a feature whose timed outputs were degenerate measured nothing: the section fails on it
    bad = invalid_figures(m, list(m.output_guard or {}), lang)
    if bad:
        note = L(lang, "list_sep").join(L(lang, "guard_fail_note", figure=guard_title(f, lang), reason=r)
                                        for f, r in bad)
        return Summary("fail", note, figures, "")
    return Summary("info", "", figures, sentence)
