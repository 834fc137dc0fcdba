"""The output guard on the card (ascendeval/output_guard.py): the banner above a table whose
figures timed degenerate outputs, the "Outputs checked" table, and a rejected figure's text.
Shared by every section whose figures the guard checks (performance, features)."""

from __future__ import annotations

from typing import Any

from .. import catalog, output_guard
from .builder import CardBuilder
from .cells import fmt, md_table
from .text import L, metric_label

# guard figure names whose table the card heads with a card_text key (the others: their catalog label)
_GUARD_TITLES = {"latency": "perf_latency", "throughput": "perf_throughput", "prefill_decode": "perf_split",
                 "graph_vs_eager": "perf_graph", "serving_main": "perf_serving", "serving": "perf_serving"}


def guard_title(name: str, lang: str) -> str:
    """A guard figure's name as the card heads its table ("Offline throughput", "Serving (rate rate=4)");
    a features block by its catalog label."""
    base, _, rest = name.partition(".")
    if base in _GUARD_TITLES:
        return L(lang, _GUARD_TITLES[base]) + (f" ({rest})" if rest else "")
    return metric_label(name, lang) if catalog.get(name) is not None else name


def invalid_figures(m: Any, figures: list[str], lang: str) -> list[tuple[str, str]]:
    """(figure, reason) of each of `figures` the output guard judged invalid."""
    out = []
    for f in figures:
        reason = output_guard.invalid_reason(m, f, lang)
        if reason is not None:
            out.append((f, reason))
    return out


def shown_invalid(m: Any, figure_name: str, lang: str) -> str | None:
    """"invalid: outputs degenerate (reason)" in place of a figure the output guard rejected."""
    reason = output_guard.invalid_reason(m, figure_name, lang)
    return None if reason is None else L(lang, "guard_invalid", reason=reason)


def guard_banner(b: CardBuilder, m: Any, figures: list[str]) -> None:
    """One line above a table whose figures timed degenerate outputs: they are no measurement."""
    bad = invalid_figures(m, figures, b.lang)
    if bad:
        reason = L(b.lang, "list_sep").join(r if len(bad) == 1 else f"{guard_title(f, b.lang)}: {r}" for f, r in bad)
        b.add(L(b.lang, "guard_banner", reason=reason))


def guard_table(b: CardBuilder, section: str, m: dict[str, Any]) -> None:
    """The output guard's result per figure: requests, empty, tokens checked, agreement with the
    reference's top-1, status (and why, when not valid)."""
    guard = m.get("output_guard")
    if not isinstance(guard, dict) or not guard:
        return
    lang = b.lang
    keys = ["num_requests", "num_empty", "num_tokens_checked", "ref_top1_agreement", "excess_nll_nats"]
    rows = []
    for name, res in guard.items():
        status = res.get("status") or "unchecked"
        reason = res.get("reason_zh" if lang == "zh" else "reason")
        shown = L(lang, f"guard_status_{status}") + (f" ({reason})" if reason else "")
        # sampled outputs (temperature 1) are judged by their excess NLL; their top-1 share is no criterion
        cells = [fmt(None if k == "ref_top1_agreement" and res.get("sampled") else res.get(k), k, lang) for k in keys]
        rows.append([guard_title(name, lang)] + cells + [shown])
    b.add(f"### {L(lang, 'guard_heading')}", L(lang, "guard_intro"),
          md_table([L(lang, "guard_figure")] + [metric_label(k, lang) for k in keys] + [metric_label("status", lang)],
                   rows), b.source(section))
