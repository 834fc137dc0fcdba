"""The metric catalog: every key a section writes into its record, declared once.

Each key has a kind (what values are possible), a unit, which direction is better, and an English
and a Chinese label (`data/metrics.yaml`). Record validation, the labels and number formats of
the card, the exported tables and the index all read it; nothing guesses a key's meaning from
its spelling (a `request_rate` of 3 req/s is a rate per second, not a fraction; `ttft_ms_min` is
a duration). A test fails on any key a real record holds that is not declared here.

Families declare a statistic over one quantity once: `ttft_ms` with stats [mean, p99, min, ...]
declares `mean_ttft_ms`, `p99_ttft_ms`, ... (prefix form) or `ttft_ms_min` (suffix form), and the
percentile-order check (min <= p50 <= p90 <= ... <= max) runs over each family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CATALOG_FILE = Path(__file__).parent / "data" / "metrics.yaml"

# kind -> (lowest, highest) allowed for numbers; None = unbounded on that side. Non-numeric kinds
# (text, flag, list, mapping) are not range-checked.
KINDS: dict[str, tuple[float | None, float | None]] = {
    "duration": (0.0, None),         # seconds / milliseconds (unit says which)
    "bytes": (0.0, None),
    "count": (0.0, None),            # tokens, requests, items, blocks ...
    "rate": (0.0, None),             # per second: tok/s, req/s, GB/s, TFLOP/s
    "fraction": (0.0, 1.0),          # shares, agreement, pass rates, utilisation
    "cosine": (-1.0, 1.0),
    "ratio": (0.0, None),            # x times: speed-ups, harness vs bare
    "nonneg": (0.0, None),           # KL, MSE, |diff|, FLOPs, sizes without a better kind
    "signed": (None, None),          # differences that may go either way
    "relative_change": (None, None),  # (new - old) / old, shown as a percentage
    "setting": (None, None),         # a configuration value echoed into the record (any number)
    "text": (None, None),
    "flag": (None, None),
    "list": (None, None),
    "mapping": (None, None),
    "data_map": (None, None),        # a mapping whose keys are data (error message -> count), not metrics
}
STAT_LABELS = {
    "en": {"mean": "Mean", "median": "Median", "std": "Std", "min": "Min", "max": "Max", "avg": "Average"},
    "zh": {"mean": "平均", "median": "中位数", "std": "标准差", "min": "最小", "max": "最大", "avg": "平均"},
}
# units shown in a label; bytes and fractions are formatted in the value itself (GiB, %)
_LABEL_UNITS = {"ms", "s", "us", "tok/s", "req/s", "GB/s", "TFLOP/s", "x", "tokens", "MiB", "GiB", "%", "W", "°C"}
_EPS = 1e-9


@dataclass(frozen=True)
class Metric:
    key: str
    kind: str
    unit: str | None
    better: str | None  # "higher", "lower" or None
    en: str
    zh: str
    stat: str | None = None  # for family members: mean, median, std, min, max, pNN
    stem: str | None = None  # the family's quantity, e.g. ttft_ms
    values: dict[str, dict[str, str]] | None = None  # a text key's fixed values -> {en, zh} as the card says them

    def label(self, lang: str = "en") -> str:
        text = self.zh if lang == "zh" else self.en
        return f"{text} ({self.unit})" if self.unit in _LABEL_UNITS else text

    def percentile(self) -> float | None:
        """Order of this statistic in its family: min 0, pNN NN, max 100; others None."""
        if self.stat == "min":
            return 0.0
        if self.stat == "max":
            return 100.0
        if self.stat and self.stat.startswith("p") and self.stat[1:].replace(".", "", 1).isdigit():
            return float(self.stat[1:])
        if self.stat == "median":
            return 50.0
        return None


class CatalogError(ValueError):
    """The catalog file itself is wrong (unknown kind, a key declared twice)."""


def _stat_label(stat: str, lang: str) -> str:
    if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
        return stat.upper()
    return STAT_LABELS[lang].get(stat, stat)


def _zh_join(stat: str, label: str) -> str:
    """'P99' + '首 token 时延' -> 'P99 首 token 时延'; '平均' + '首 token 时延' -> '平均首 token 时延'."""
    return f"{stat} {label}" if stat.isascii() else f"{stat}{label}"


@lru_cache(maxsize=1)
def catalog() -> dict[str, Metric]:
    """Every declared key -> Metric (families expanded)."""
    doc = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))
    out: dict[str, Metric] = {}

    def add(m: Metric) -> None:
        if m.kind not in KINDS:
            raise CatalogError(f"{CATALOG_FILE.name}: {m.key}: kind {m.kind!r} not in {', '.join(KINDS)}")
        if m.key in out:
            raise CatalogError(f"{CATALOG_FILE.name}: {m.key} declared twice")
        out[m.key] = m

    for stem, spec in (doc.get("families") or {}).items():
        for form, stats in (("prefix", spec.get("stats") or []), ("suffix", spec.get("suffix_stats") or [])):
            for stat in stats:
                key = f"{stat}_{stem}" if form == "prefix" else f"{stem}_{stat}"
                # a spread (std) has the quantity's unit but no direction
                better = None if stat == "std" else spec.get("better")
                add(Metric(key, spec["kind"], spec.get("unit"), better,
                           f"{_stat_label(stat, 'en')} {spec['en']}", _zh_join(_stat_label(stat, "zh"), spec["zh"]),
                           stat, stem))
        if spec.get("plain", True):
            add(Metric(stem, spec["kind"], spec.get("unit"), spec.get("better"), spec["en"], spec["zh"]))
    for key, spec in (doc.get("metrics") or {}).items():
        add(Metric(key, spec["kind"], spec.get("unit"), spec.get("better"), spec["en"], spec["zh"],
                   values=spec.get("values")))
    return out


def get(key: str) -> Metric | None:
    return catalog().get(key)


def label(key: str, lang: str = "en") -> str:
    """The declared label; an undeclared key is shown as itself in backticks (and fails a test)."""
    m = catalog().get(key)
    return m.label(lang) if m else f"`{key}`"


def check_value(key: str, value: Any) -> str | None:
    """Why `value` is impossible for `key`, or None. Undeclared keys are not judged here (the
    catalog test names them); NaN and infinity are never a measurement (null is)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return f"{value} is not a number (use null for 'not measured')"
    m = catalog().get(key)
    if m is None:
        return None
    low, high = KINDS[m.kind]
    too_low = low is not None and value < low - _EPS
    too_high = high is not None and value > high + _EPS
    if (too_low or too_high) and low is not None and high is not None:
        return f"{m.kind} {value} outside [{low:g}, {high:g}]"
    if too_low:
        return f"{m.kind} {value} is negative" if low == 0 else f"{m.kind} {value} below {low:g}"
    if too_high:
        return f"{m.kind} {value} above {high:g}"
    return None


def percentile_order_problems(mapping: dict[str, Any], path: str) -> list[str]:
    """min <= p50 <= p90 <= ... <= max for every family present in one mapping."""
    by_stem: dict[str, list[tuple[float, float, str]]] = {}
    for k, v in mapping.items():
        m = catalog().get(str(k))
        if m is None or m.stem is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        order = m.percentile()
        if order is not None:
            by_stem.setdefault(m.stem, []).append((order, float(v), str(k)))
    problems = []
    for items in by_stem.values():
        items.sort()
        for (_, v1, k1), (_, v2, k2) in zip(items, items[1:]):
            if v1 > v2 * (1 + 1e-9) + 1e-12:
                problems.append(f"{path}: {k1}={v1} > {k2}={v2}")
    return problems


def format_value(value: Any, key: str = "", lang: str = "en") -> str:
    """One value for a table cell, by the key's declared kind and unit. None is 'not measured'."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✅" if value else "❌"
    m = catalog().get(key)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, key, lang) for v in value)
    if isinstance(value, str) and m is not None and m.values and value in m.values:
        return m.values[value].get(lang, m.values[value]["en"])
    if not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "—"
    kind = m.kind if m else None
    if kind == "bytes" or (m is not None and m.unit == "bytes"):  # a signed change of memory too
        return f"{value / 2**30:.2f} GiB" if abs(value) >= 2**28 else f"{value / 2**20:.1f} MiB"
    if kind == "fraction":
        return f"{value * 100:.2f}%"
    if kind == "relative_change":
        return f"{value * 100:+.1f}%"
    if kind == "cosine":
        return f"{value:.6f}"
    if kind == "ratio":
        return f"{value:.2f}x" if m and m.unit == "x" else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if kind == "duration" and m and m.unit == "s":
        return f"{value:.3f}"
    if kind in ("duration", "rate"):
        return f"{value:,.2f}"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.4g}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:,.3f}".rstrip("0").rstrip(".")


def undeclared_keys(metrics: Any, skip: frozenset[str] = frozenset()) -> set[str]:
    """Keys of numeric / text / flag leaves (and named mappings) in a record's metrics that the
    catalog does not declare. `skip`: top-level keys whose content is not metrics (steps,
    engine_starts, the environment probe, ...)."""
    found: set[str] = set()

    def walk(obj: Any, key: str | None, depth: int) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if depth == 0 and k in skip:
                    continue
                declared = catalog().get(str(k))
                if declared is not None and declared.kind == "data_map":
                    continue  # its keys are data (error messages, ...), not metric names
                walk(v, str(k), depth + 1)
            return
        if isinstance(obj, list):
            for v in obj:
                walk(v, key, depth + 1)
            return
        if key is not None and key not in catalog():
            found.add(key)

    walk(metrics, None, 0)
    return found


def label_frame(df: Any, lang: str = "en") -> Any:
    """A pandas table for display with declared keys replaced by their labels: column names, and
    index entries that are metric keys (key/value tables). The data is not changed; anything that
    is not a table (a plot, a text) is returned as it is."""
    if not (hasattr(df, "columns") and hasattr(df, "rename") and hasattr(df, "index")):
        return df
    columns = {c: label(c, lang) for c in df.columns if isinstance(c, str) and c in catalog()}
    out = df.rename(columns=columns)
    if any(isinstance(i, str) and i in catalog() for i in out.index):
        out = out.rename(index={i: label(i, lang) for i in out.index if isinstance(i, str) and i in catalog()})
    if isinstance(out.index.name, str) and out.index.name in catalog():  # e.g. a table indexed by batch_size
        out.index = out.index.rename(label(out.index.name, lang))
    return out
