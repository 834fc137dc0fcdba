"""The quality section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from ...report.builder import CardBuilder, plots_of
from ...report.cells import fmt, get, md_table
from ...report.text import L, metric_label, verdict_label
from .metrics import QualityMetrics


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    b.add(f"## {L(lang, 'sec_quality')}")
    if not b.status_line("quality"):
        return
    m = d.rec("quality")["metrics"]
    if isinstance(m.get("suites"), dict):
        b.add(f"### {L(lang, 'qual_suites')}")
        b.kv_table("quality", m["suites"], kinds=["suites"])
        if isinstance(m.get("reference"), dict):
            b.kv_table("quality", m["reference"])
    bench = m.get("benchmarks")
    if isinstance(bench, dict) and bench:
        b.add(f"### {L(lang, 'qual_bench')}")
        rows = []
        for name, r in bench.items():
            if not isinstance(r, dict):
                continue
            scores = {k: v for k, v in r.items() if isinstance(v, dict) and "accuracy" in v}
            shown = metric_label(name, lang)  # the benchmark's own name (GSM8K, ARC-Challenge, ...)
            if not scores:
                rows.append((shown, "—", "—", "—", L(lang, r.get("status", "skipped")), r.get("reason") or ""))
            for method, s in scores.items():
                rows.append((shown, method, fmt(s.get("accuracy"), "accuracy"), fmt(s.get("num_items")),
                             L(lang, r.get("status", "ok")), get(r, "provenance.source") or ""))
        b.add(md_table([L(lang, "metric"), L(lang, "method"), L(lang, "accuracy"), L(lang, "items"), L(lang, "status"),
                        L(lang, "note")], rows),
              b.source("quality", ["items"]))
    bl = m.get("baselines")
    if isinstance(bl, list) and bl:
        b.add(f"### {L(lang, 'qual_baselines')}")
        b.add(md_table([L(lang, "metric"), L(lang, "measured"), L(lang, "baseline"), "Δ", L(lang, "source"),
                        L(lang, "verdict")],
                       [(r.get("metric"), fmt(r.get("measured"), "accuracy"), fmt(r.get("baseline"), "accuracy"),
                         fmt(r.get("diff_abs"), "diff"), r.get("label") or r.get("source"),
                         verdict_label({True: "pass", False: "fail"}.get(r.get("passed"), "none"), lang)
                         + (f" ({r['reason']})" if r.get("reason") else "")) for r in bl]), b.source("quality"))
    plots_of(b, "quality")



def verdict(m: QualityMetrics, lang: str) -> tuple[str, str]:
    """Baselines decide (any miss fails); without baselines the pass rate is information."""
    bl = m.baselines or []
    if any(b.passed is False for b in bl):
        return "fail", ", ".join(b.metric for b in bl if b.passed is False)
    if bl and all(b.passed is True for b in bl):
        return "pass", ""
    rate = m.suites.overall_pass_rate if m.suites else None
    if rate is None:
        return "info", ""
    return "info", f"{metric_label('overall_pass_rate', lang)} = {fmt(rate, 'overall_pass_rate', lang)}"
