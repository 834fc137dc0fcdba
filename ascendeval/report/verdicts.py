"""Each section's verdict (pass / fail / warn / info / none) with the figure that decides it, the
few figures a reader compares (each with its conditions) and a sentence for the conclusion; and
the list of everything not measured. A section's own rule lives in its package (`summary` in
sections/<name>/card.py); this module applies what every section shares (missing, skipped, failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from .cells import fmt, get
from .rundata import RunData
from .text import L, metric_label, reason_text, step_label

HARDWARE_SPECIFIC = {"cann", "npu_driver", "npu_smi", "nvidia_smi", "cuda", "npu", "torch_npu", "vllm_ascend"}


@dataclass
class Figure:
    """One figure of the model page: label, formatted value, and what it was measured under."""

    label: str
    value: str
    conditions: str = ""


@dataclass
class Summary:
    """What a section's `summary` rule returns for a section that ran."""

    state: str  # pass | fail | warn | info
    note: str = ""  # the deciding figure and its threshold, e.g. "Top-1 token agreement 98.91% < 99.00%"
    figures: list[Figure] = field(default_factory=list)
    sentence: str = ""  # one sentence of the page's conclusion


def figure(key: str, value: Any, conditions: str = "", lang: str = "en", shown: str | None = None) -> Figure:
    """The figure of metric `key` (catalog label and format); `shown` replaces the formatted value."""
    return Figure(metric_label(key, lang), shown if shown is not None else fmt(value, key, lang), conditions)


@dataclass
class Verdict:
    section: str
    state: str  # pass | fail | warn | info | none
    note: str = ""
    figures: list[Figure] = field(default_factory=list)
    sentence: str = ""


def section_verdict(data: RunData, section: str, lang: str = "en") -> Verdict:
    rec = data.rec(section)
    if rec is None:
        return Verdict(section, "none", L(lang, "section_missing"))
    status, reason = rec.get("status"), reason_text(rec, lang)
    m = rec.get("metrics", {})
    if status == "skipped":
        return Verdict(section, "none", reason)
    if status == "failed":
        return Verdict(section, "fail", reason)
    rule = sections_mod.get(section).summary if section in sections_mod.NAMES else None
    if rule is not None:
        try:
            typed = data.metrics(section)
        except ValidationError as exc:  # hand-edited or from another version: verify names the keys
            return Verdict(section, "fail", L(lang, "record_misfit", problem=_first_problem(exc)))
        s = rule(typed, rec.get("params", {}).get(section) or {}, lang)
        return Verdict(section, s.state, s.note, s.figures, s.sentence)
    # no rule of its own: a recorded pass/fail decides, else the figures are information
    passed = m.get("verdict", {}).get("passed") if isinstance(m.get("verdict"), dict) else m.get("passed")
    return Verdict(section, {True: "pass", False: "fail"}.get(passed, "info"), "")


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"metrics.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def not_measured(data: RunData, lang: str = "en") -> list[dict[str, str]]:
    """Every section or step that did not produce a figure, with its reason; hardware absent on
    this host is listed from the environment record and marked hardware-specific."""
    out: list[dict[str, str]] = []
    for section in sections_mod.NAMES:
        rec = data.rec(section)
        if rec is None:
            if section != "report":
                out.append({"section": section, "what": "—", "status": "skipped", "reason": L(lang, "section_missing")})
            continue
        if rec.get("status") in ("skipped", "failed"):
            out.append({"section": section, "what": "—", "status": rec["status"], "reason": reason_text(rec, lang)})
        for name, st in (get(rec, "metrics.steps") or {}).items():
            if isinstance(st, dict) and st.get("status") in ("skipped", "failed"):
                out.append({"section": section, "what": step_label(name, lang), "status": st["status"],
                            "reason": reason_text(st, lang)})
    absent = get(data.rec("environment"), "metrics.system.absent") or {}
    for comp, why in absent.items():
        # the probe's finding (paths it looked in, the import error) is technical text: the card
        # says what is absent in its language and keeps the finding as found
        out.append({"section": "environment", "what": L(lang, f"comp_{comp}"),
                    "status": "hw" if comp in HARDWARE_SPECIFIC else "absent",
                    "reason": str(why) if lang == "en" else L(lang, "absent_reason", finding=why)})
    return out

