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


def verdict_label(state: str, lang: str) -> str:
    return L(lang, {"pass": "v_pass", "fail": "v_fail", "warn": "v_warn", "info": "v_info"}.get(state, "v_none"))


STATE_ICON = {"pass": "✅", "fail": "❌", "warn": "⚠️", "info": "ℹ️", "none": "—"}

_PART_LABELS = {
    "en": {"p50": "P50", "p90": "P90", "p95": "P95", "p99": "P99", "p10": "P10", "p25": "P25", "p75": "P75",
           "mean": "mean", "median": "median", "std": "std", "min": "min", "max": "max", "ttft": "TTFT",
           "tpot": "TPOT", "itl": "ITL", "e2el": "E2E latency", "latency": "latency", "tok": "tok", "per": "/",
           "rate": "rate", "count": "count", "kl": "KL", "kv": "KV", "num": "number of", "mse": "MSE"},
    "zh": {"p50": "P50", "p90": "P90", "p95": "P95", "p99": "P99", "p10": "P10", "p25": "P25", "p75": "P75",
           "mean": "平均", "median": "中位数", "std": "标准差", "min": "最小", "max": "最大", "ttft": "首 Token 延迟 TTFT",
           "tpot": "每 Token 延迟 TPOT", "itl": "Token 间延迟 ITL", "e2el": "端到端延迟", "latency": "延迟",
           "tok": "tok", "per": "/", "rate": "比率", "count": "数量", "kl": "KL", "kv": "KV", "num": "数量",
           "mse": "MSE"},
}


_UNITS = {"ms": "ms", "s": "s", "bytes": "bytes", "gbps": "GB/s", "tflops": "TFLOPS"}


def metric_label(key: str, lang: str = "en") -> str:
    """The key's label from the metric catalog (`p99_ttft_ms` -> 'P99 TTFT (ms)'). Keys outside
    the catalog (probe and model facts, never metrics) get a label built from their parts."""
    declared = catalog.get(key)
    if declared is not None:
        return declared.label(lang)
    if key.endswith("_pass_rate"):  # per-suite pass rates: qa_pass_rate, code_pass_rate, ...
        suite = key[: -len("_pass_rate")]
        return f"{suite} 通过率" if lang == "zh" else f"{suite} pass rate"
    parts = key.split("_")
    unit = None
    for suffix, u in (("tok_per_s", "tok/s"), ("req_per_s", "req/s"), ("per_s", "/s")):
        if key.endswith("_" + suffix) and len(parts) > len(suffix.split("_")):
            parts, unit = parts[: -len(suffix.split("_"))], u
            break
    if unit is None and len(parts) > 1 and parts[-1] in _UNITS:
        unit = _UNITS[parts.pop()]
        if unit == "bytes":  # the value is printed as MiB / GiB already
            unit = None
    words = [_PART_LABELS.get(lang, _PART_LABELS["en"]).get(p, p) for p in parts]
    text = " ".join(words)
    text = text[:1].upper() + text[1:] if lang == "en" else text
    return f"{text} ({unit})" if unit else text



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
