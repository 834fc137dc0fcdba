"""Table cells: one value formatted for the card (catalog kind and unit), Markdown escaping and
tables, and None-safe reads of nested records."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

from .. import catalog


def fmt(value: Any, key: str = "", lang: str = "en") -> str:
    """One value for a table cell. None is 'not measured' (never 0). A key in the metric catalog
    is formatted by its declared kind and unit; anything else (a count in a table, a recorded
    text) by its type alone: the meaning of a figure is never guessed from its key's spelling."""
    if catalog.get(key) is not None:
        return catalog.format_value(value, key, lang)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✅" if value else "❌"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6) else f"{value:,.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, key, lang) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)[:120]
    return str(value)


def md_escape(text: Any, limit: int | None = 160) -> str:
    """A cell-safe string: pipes escaped, newlines shown as ⏎, long text cut with an ellipsis."""
    s = str(text)
    if limit and len(s) > limit:
        s = s[:limit] + "…"
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", " ⏎ ").replace("`", "'")


def md_table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    rows = [list(r) for r in rows]
    if not rows:
        return ""
    out = ["| " + " | ".join(md_escape(h, None) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c if isinstance(c, Raw) else md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


class Raw(str):
    """A cell already in Markdown (a link): not escaped."""


def get(d: Any, path: str, default: Any = None) -> Any:
    """get(rec, 'metrics.latency.p99_latency_s') -> value or default (None-safe)."""
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def human_params(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "—"
    for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suf} ({int(n):,})"
    return f"{int(n):,}"


def is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))



def opt(obj: Any, path: str) -> Any:
    """`obj.a.b.c` of a typed record where any block on the way may be absent (None: not
    measured): opt(m, "load.engine_info.engine")."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj
