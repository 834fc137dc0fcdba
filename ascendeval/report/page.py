"""The model page (README.md): what a reader of a model hub page needs, on about two screens: the
conclusion, each section's verdict with the figure that decides it, the figures a reader compares
with the conditions they were measured under, and the deploy command. Everything else is in the
full report (report.md / report.html), which this page links to."""

from __future__ import annotations

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from . import templates
from .builder import Card
from .card import ANCHORS, header_facts
from .cells import Raw, get, md_table
from .deploy import deploy_commands, download_command
from .rundata import RunData
from .text import L, section_label, verdict_label
from .verdicts import Verdict, not_measured, section_verdict


def overall(verdicts: list[Verdict], lang: str) -> str:
    """The headline: every judged check passes, some fail their thresholds, or sections broke."""
    broken = [v for v in verdicts if v.state == "fail" and not v.figures]
    failed = [v for v in verdicts if v.state == "fail" and v.figures]
    names = lambda vs: ", ".join(section_label(v.section, lang) for v in vs)  # noqa: E731
    if broken:
        return L(lang, "overall_broken", n=len(broken), names=names(broken))
    if failed:
        return L(lang, "overall_fail", n=len(failed), names=names(failed))
    if any(v.state == "none" for v in verdicts):
        return L(lang, "overall_missing")
    return L(lang, "overall_pass")


def build_page(data: RunData, lang: str = "en") -> Card:
    """The model page of one run, from its records only."""
    verdicts = [section_verdict(data, s, lang) for s in sections_mod.JUDGED]
    rows, figure_rows = [], []
    for v in verdicts:
        name = section_label(v.section, lang)
        detail = Raw(f"[report.html#{ANCHORS[v.section]}](report.html#{ANCHORS[v.section]})")
        rows.append((name, verdict_label(v.state, lang), v.note, detail))
        figure_rows += [(name, f.label, f.value, f.conditions) for f in v.figures]
    facts = header_facts(data, lang)
    ver = get(data.rec("report"), "metrics.verify")
    verify = (L(lang, "verify_line", checks=ver.get("checks_count"), problems=ver.get("problems_count"))
              if isinstance(ver, dict) else "")
    markdown = templates.render(
        "page.md.j2", lang, **facts, overall=overall(verdicts, lang),
        sentences=[v.sentence for v in verdicts if v.sentence],
        verdicts=md_table([L(lang, "section"), L(lang, "verdict"), L(lang, "deciding"), L(lang, "details")], rows),
        figures=md_table([L(lang, "section"), L(lang, "figure"), L(lang, "value"), L(lang, "conditions")], figure_rows),
        cmds=deploy_commands(data), download=download_command(data),
        missing=len(not_measured(data, lang)), verify=verify)
    return Card(markdown + "\n", [], data.run_dir)
