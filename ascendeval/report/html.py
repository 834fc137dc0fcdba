"""The pages of a run: README.md / README.html (the model page), report.md (the full report) and
report.html (the full report followed by every executed section notebook), each self-contained."""

from __future__ import annotations

import html as html_mod
from pathlib import Path

from .. import records

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from .builder import Card
from .card import build_card
from .page import build_page
from .plots import make_plots
from .rundata import RunData, load_run

# Wide tables scroll inside their own box instead of widening the page (phones); the font stack
# names CJK and emoji fonts so Chinese text and the verdict marks render where they are installed.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Noto Sans SC","PingFang SC",
"Microsoft YaHei",sans-serif,"Noto Color Emoji","Apple Color Emoji","Segoe UI Emoji";max-width:1100px;
margin:2em auto;padding:0 1em;line-height:1.5;color:#222;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{background:#f3f3f3}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre}
code{background:#f6f8fa;padding:0 .2em}img{max-width:100%;height:auto}sub{color:#666}
.nb-section{border-top:3px solid #4c78a8;margin-top:3em}
.mark{display:inline-block;min-width:1.1em;padding:0 .15em;border-radius:.2em;color:#fff;font-weight:bold;
text-align:center;line-height:1.2;font-family:"DejaVu Sans",sans-serif}
.mark.pass{background:#2e7d32}.mark.fail{background:#c62828}.mark.warn{background:#ef6c00}.mark.info{background:#1565c0}
@media (max-width:600px){body{margin:1em auto;padding:0 .6em}table{font-size:.85em}}
"""


# The verdict marks are emoji in the Markdown (model hubs render them); on the HTML page they are
# drawn as coloured badges with glyphs every basic font has, so they never show as empty boxes on a
# machine without an emoji font.
_MARKS = {"✅": ("pass", "✓"), "❌": ("fail", "✗"), "⚠️": ("warn", "!"), "ℹ️": ("info", "i")}


def _badges(html: str) -> str:
    for emoji, (cls, glyph) in _MARKS.items():
        html = html.replace(emoji, f'<span class="mark {cls}">{glyph}</span>')
    return html


def markdown_to_html(text: str, title: str, extra_body: str = "") -> str:
    """A self-contained HTML page (tables, code blocks, embedded images) from card Markdown."""
    import mistune

    render = mistune.create_markdown(plugins=["table", "strikethrough", "url"], escape=False)
    body = _badges(render(text))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html_mod.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n{extra_body}</body></html>\n")


def notebook_body_html(nb_path: Path) -> str:
    """An executed notebook's outputs (inputs hidden) as an HTML fragment; images are data URIs."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    exp = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                       exclude_output_prompt=True)
    body, _ = exp.from_notebook_node(nb)
    return body


def card_title(card: Card) -> str:
    first = card.markdown.splitlines()[0] if card.markdown else "report"
    return first.lstrip("# ").strip()


def write_card(data: RunData, lang: str = "en") -> dict[str, str]:
    """The model page README.md (+ README.html, one file) and the full report report.md (images as
    files; report.html, with the section notebooks, is `write_run_html`)."""
    make_plots(data, lang)
    page = build_page(data, lang)
    md_path = data.run_dir / "README.md"
    records._atomic_write(md_path, page.markdown)
    html_path = data.run_dir / "README.html"
    records._atomic_write(html_path, markdown_to_html(page.markdown_inline(), card_title(page)))
    full = data.run_dir / "report.md"
    records._atomic_write(full, build_card(data, lang).markdown)
    return {"markdown": str(md_path), "html": str(html_path), "report_markdown": str(full)}


def write_run_html(run_dir: str | Path, lang: str = "en") -> Path:
    """report.html: the card followed by every executed section notebook (outputs only), one file,
    every plot embedded; readable offline and attachable to a ticket as is."""
    data = load_run(run_dir)
    card = build_card(data, lang)
    parts = []
    # the report section's own notebook is not appended: it shows the card as it stood while the
    # run was still going (a stale copy of what heads this page)
    for section in (s for s in sections_mod.NAMES if s != "report"):
        nb = data.run_dir / "notebooks" / f"{sections_mod.get(section).notebook}.ipynb"
        if nb.is_file():
            try:
                body = notebook_body_html(nb)
            except Exception as exc:  # noqa: BLE001 - one broken notebook must not lose the page
                body = f"<p>export failed: {html_mod.escape(str(exc))}</p>"
            parts.append(f"<section class=\"nb-section\" id=\"nb-{section}\"><h2>{sections_mod.get(section).notebook}</h2>\n"
                         f"{body}</section>")
    path = data.run_dir / "report.html"
    records._atomic_write(path, markdown_to_html(card.markdown_inline(), card_title(card), "\n".join(parts)))
    return path

