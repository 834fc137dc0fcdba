"""The report's own plots (per-prompt smoke latency, wall time per section and engine start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import plotting
from ..plotting import word
from .card import timing_rows
from .rundata import RunData

SECTION_COLOUR, ENGINE_COLOUR = "#54a24b", "#f58518"
LABEL_CHARS = 44  # wall-time labels wrap at spaces beyond this, so the bars keep most of the width


def make_plots(data: RunData, lang: str = "en") -> list[str]:
    """Two summary plots from records: per-prompt smoke latency and wall time per section/engine start."""
    art = data.run_dir / "artifacts"
    out = []
    with plotting.style(lang) as (plt, lang):
        prompts = data.rows("smoke", "prompts")
        if prompts:
            out.append(_smoke_latency(plt, lang, prompts, art / "report_smoke_latency.png"))
        rows = timing_rows(data, lang)
        if rows:
            out.append(_wall_times(plt, lang, rows, art / "report_wall_times.png"))
    return [str(p.relative_to(data.run_dir)) for p in out]


def _prompt_label(i: int, row: dict[str, Any], cjk: bool) -> str:
    text = str(row.get("prompt", ""))
    # without a CJK font a Chinese prompt would be boxes: its kind says more
    shown = plotting.shorten(text, 30) if cjk or text.isascii() else f"[{row.get('kind', '')}]"
    return f"{i}. {shown}".replace("$", r"\$")  # a $ pair would be read as mathtext


def _smoke_latency(plt: Any, lang: str, prompts: list[dict[str, Any]], path: Path) -> Path:
    cjk = plotting.cjk_font() is not None
    fig, axs = plotting.figure(plt, 0.32 * len(prompts) + 1.3)
    ax = axs[0][0]
    ax.barh(range(len(prompts)), [r.get("latency_s") or 0 for r in prompts], color="#4c78a8")
    ax.set_yticks(range(len(prompts)), [_prompt_label(i, r, cjk) for i, r in enumerate(prompts, 1)])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(word(lang, "latency_s"))
    ax.set_title(word(lang, "smoke"))
    return plotting.save(fig, path)


def _wall_times(plt: Any, lang: str, rows: list[tuple[str, str, float]], path: Path) -> Path:
    from matplotlib.patches import Patch

    labels = [plotting.wrap(w, LABEL_CHARS) for w, _, _ in rows]
    # bars are evenly spaced, so every row needs the height of the tallest label or labels overlap
    lines = max(label.count("\n") + 1 for label in labels)
    fig, axs = plotting.figure(plt, (0.15 * lines + 0.1) * len(rows) + 1.2)
    ax = axs[0][0]
    ax.barh(range(len(rows)), [s for _, _, s in rows],
            color=[ENGINE_COLOUR if k == "engine" else SECTION_COLOUR for _, k, _ in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(word(lang, "wall_s"))
    ax.set_title(word(lang, "wall"))
    plotting.legend_below(fig, [Patch(color=SECTION_COLOUR), Patch(color=ENGINE_COLOUR)],
                          [word(lang, "section"), word(lang, "engine_start")])
    return plotting.save(fig, path)
