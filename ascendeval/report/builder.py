"""The card under construction: `CardBuilder` collects Markdown parts and images; the helpers every
section's card renderer uses (source line, metric tables, status line, plots)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from .cells import fmt, is_scalar, md_escape, md_table
from .rundata import RunData
from .text import L, metric_label, reason_text


@dataclass
class Card:
    """The model card: Markdown text plus the images it references (paths relative to the run)."""

    markdown: str
    images: list[str] = field(default_factory=list)
    run_dir: Path | None = None

    def markdown_inline(self) -> str:
        """The Markdown with images as data URIs (for a notebook display or a single-file page)."""
        text = self.markdown
        for rel in self.images:
            uri = data_uri(self.run_dir / rel) if self.run_dir else None
            if uri:
                text = text.replace(f"]({rel})", f"]({uri})")
        return text

    def _repr_markdown_(self) -> str:
        return self.markdown_inline()


def data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = {"png": "image/png", "svg": "image/svg+xml", "jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(
        path.suffix.lower().lstrip("."), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


class CardBuilder:
    def __init__(self, data: RunData, lang: str):
        self.d, self.lang, self.out, self.images = data, lang, [], []

    def add(self, *parts: str) -> None:
        self.out.extend(p for p in parts if p)

    def source(self, section: str, kinds: Iterable[str] = ()) -> str:
        """'Source: record records/x.json · records/x.kind.jsonl · notebook 0N_x.html'."""
        links = [f"{L(self.lang, 'record')} [records/{section}.json](records/{section}.json)"]
        for k in kinds:
            if (self.d.run_dir / "records" / f"{section}.{k}.jsonl").is_file():
                links.append(f"[records/{section}.{k}.jsonl](records/{section}.{k}.jsonl)")
        stem = sections_mod.get(section).notebook
        if (self.d.run_dir / f"{stem}.html").is_file() or section != "report":
            links.append(f"{L(self.lang, 'notebook')} [{stem}.html]({stem}.html)")
        return f"<sub>{L(self.lang, 'source')}: " + " · ".join(links) + "</sub>"

    def kv_table(self, section: str, mapping: dict[str, Any] | None, keys: Iterable[str] | None = None,
                 kinds: Iterable[str] = ()) -> None:
        """A metric/value table of the scalar entries of `mapping` (in `keys` order when given)."""
        if not isinstance(mapping, dict):
            return
        keys = list(keys) if keys is not None else [k for k, v in mapping.items() if is_scalar(v)]
        rows = [(metric_label(k, self.lang), fmt(mapping.get(k), k, self.lang)) for k in keys if k in mapping]
        if rows:
            self.add(md_table([L(self.lang, "metric"), L(self.lang, "value")], rows), self.source(section, kinds))

    def image(self, rel: str, alt: str) -> None:
        if (self.d.run_dir / rel).is_file():
            self.images.append(rel)
            self.add(f"![{md_escape(alt, None)}]({rel})")

    def open_part(self, section: str) -> dict[str, Any] | None:
        """A section's part begins: its heading (with the registry's label) and status line; the
        record's metrics when there is anything to show, else None."""
        from .text import section_label

        self.add(f"## {section_label(section, self.lang)}")
        return self.d.rec(section)["metrics"] if self.status_line(section) else None

    def status_line(self, section: str) -> bool:
        """Status of a section; False when there is nothing else to show."""
        rec = self.d.rec(section)
        if rec is None:
            self.add(L(self.lang, "section_missing"))
            return False
        st = rec.get("status", "?")
        line = L(self.lang, "section_status", status=L(self.lang, st))
        if rec.get("reason"):
            line += " — " + L(self.lang, "section_reason", reason=md_escape(reason_text(rec, self.lang), 400))
        self.add(line + " " + self.source(section))
        return bool(rec.get("metrics"))


def table_of(b: CardBuilder, section: str, obj: Any) -> None:
    """A list of flat dicts -> one table; a dict -> its arms side by side (the nested dicts, e.g.
    distinct vs shared prefix, baseline vs ngram: one column each, one row per figure), then a
    metric/value table of its own scalar figures."""
    lang = b.lang
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        keys = [k for k in obj[0] if all(is_scalar(r.get(k)) for r in obj)]
        b.add(md_table([metric_label(k, lang) for k in keys], [[fmt(r.get(k), k, lang) for k in keys] for r in obj]),
              b.source(section))
    elif isinstance(obj, dict):
        arms = {k: v for k, v in obj.items() if isinstance(v, dict) and any(is_scalar(x) for x in v.values())}
        flat = {k: v for k, v in obj.items() if is_scalar(v)}
        if arms:
            keys = list(dict.fromkeys(k for v in arms.values() for k, x in v.items() if is_scalar(x)))
            table = md_table([L(lang, "metric")] + [metric_label(a, lang) for a in arms],
                             [[metric_label(k, lang)] + [fmt(v.get(k), k, lang) for v in arms.values()] for k in keys])
            # figures over all arms (prompts, speed-up): one line under their table, not a table of their own
            over_all = " · ".join(f"{metric_label(k, lang)}: **{fmt(v, k, lang)}**" for k, v in flat.items())
            b.add(table, *([over_all] if over_all else []), b.source(section))
        for v in obj.values():
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
                table_of(b, section, v)
        if flat and not arms:
            b.add(md_table([L(lang, "metric"), L(lang, "value")],
                           [(metric_label(k, lang), fmt(v, k, lang)) for k, v in flat.items()]), b.source(section))


def plots_of(b: CardBuilder, section: str) -> None:
    arts = [a for a in (b.d.rec(section) or {}).get("artifacts", []) if a.lower().endswith((".png", ".svg"))]
    if arts:
        b.add(f"#### {L(b.lang, 'plots')}")
        for a in arts:
            b.image(a, Path(a).stem)

