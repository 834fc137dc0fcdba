"""The precision section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from ...report.builder import CardBuilder, is_scalar, plots_of
from ...report.cells import fmt, get, md_table
from ...report.text import L, metric_label, verdict_label
from .metrics import PrecisionMetrics


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    b.add(f"## {L(lang, 'sec_precision')}")
    if not b.status_line("precision"):
        return
    m = d.rec("precision")["metrics"]
    ref = m.get("reference")
    if isinstance(ref, dict):
        b.add(", ".join(f"{k}: `{fmt(v, k)}`" for k, v in ref.items() if is_scalar(v) and v is not None))
    tf = m.get("teacher_forced")
    if isinstance(tf, dict):
        b.add(f"### {L(lang, 'prec_summary')}")
        b.kv_table("precision", tf, kinds=["positions", "prompts"])
    checks = get(m, "verdict.checks")
    if isinstance(checks, list) and checks:
        b.add(f"### {L(lang, 'prec_verdict')}")
        b.add(md_table([L(lang, "metric"), L(lang, "measured"), "", L(lang, "threshold"), L(lang, "verdict")],
                       [(metric_label(c.get("metric", ""), lang), fmt(c.get("measured"), c.get("metric", "")), c.get("op"),
                         fmt(c.get("threshold"), c.get("metric", "")),
                         verdict_label({True: "pass", False: "fail"}.get(c.get("passed"), "none"), lang))
                        for c in checks]), b.source("precision"))
    fr = m.get("free_running")
    if isinstance(fr, dict):
        b.add(f"### {L(lang, 'prec_free')}")
        b.kv_table("precision", fr, kinds=["free_running"])
    plots_of(b, "precision")



def verdict(m: PrecisionMetrics, lang: str) -> tuple[str, str]:
    """The thresholds' verdict recorded by the section; the failing checks are the note."""
    passed = m.verdict.passed if m.verdict else None
    if passed is True:
        return "pass", ""
    if passed is False:
        return "fail", ", ".join(metric_label(c.metric, lang) for c in m.verdict.checks if c.passed is False)
    return "info", ""
