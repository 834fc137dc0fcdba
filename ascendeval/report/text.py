"""The card's words: its own headings and prose (data/card_text.yaml, English and Chinese) and the
labels of metrics (from the metric catalog) and sections."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from .. import catalog, paths

CARD_TEXT = paths.PACKAGE_DIR / "data" / "card_text.yaml"


@lru_cache(maxsize=1)
def card_text() -> dict[str, dict[str, Any]]:
    """{key: {"en": text, "zh": text}} of the card's own words."""
    return yaml.safe_load(CARD_TEXT.read_text(encoding="utf-8"))


def L(lang: str, key: str, **kw: Any) -> Any:
    """The card text `key` in `lang` (falls back to English, then to the key), formatted with `kw`."""
    entry = card_text().get(key) or {}
    text = entry.get(lang, entry.get("en", key))
    return text.format(**kw) if kw and isinstance(text, str) else text


def section_label(section: str, lang: str = "en") -> str:
    from .. import (
        sections,  # the registry imports the section cards, which import this module
    )

    try:
        return L(lang, sections.get(section).heading)
    except KeyError:
        return section


def step_label(name: str, lang: str = "en") -> str:
    """A notebook step (`run.step(name, ...)`) as the card names it; the name itself when unknown."""
    return L(lang, f"step_{name}") if f"step_{name}" in card_text() else name


def reason_text(entry: dict[str, Any] | None, lang: str) -> str:
    """The reason a record or step gives, in `lang` where the writer wrote one (`reason_zh`); a
    failure's reason is the error's own text and stays as raised."""
    if not entry:
        return ""
    return (entry.get(f"reason_{lang}") if lang != "en" else None) or entry.get("reason") or ""


def verdict_label(state: str, lang: str) -> str:
    return L(lang, {"pass": "v_pass", "fail": "v_fail", "warn": "v_warn", "info": "v_info"}.get(state, "v_none"))


STATE_ICON = {"pass": "✅", "fail": "❌", "warn": "⚠️", "info": "ℹ️", "none": "—"}





def metric_label(key: str, lang: str = "en") -> str:
    """The key's label from the metric catalog (`p99_ttft_ms` -> 'P99 TTFT (ms)'). A key outside
    the catalog is shown as itself (a test fails on any such key in the card)."""
    declared = catalog.get(key)
    return declared.label(lang) if declared is not None else key


def seam_text(verdict: str | None, lang: str) -> str:
    """The vLLM seam's recorded verdict (engines/vllm_contract.verdict, English in the record) in
    the card's language."""
    import re

    if not verdict:
        return "—"
    for pattern, key in ((r"contract checked$", "seam_checked"), (r"vLLM not installed$", "seam_absent"),
                         (r"unsupported: (\d+) required items missing$", "seam_unsupported"),
                         (r"untested version: (\d+) items unknown$", "seam_untested")):
        m = re.match(pattern, verdict)
        if m:
            return L(lang, key, n=m.group(1) if m.groups() else "")
    return verdict
