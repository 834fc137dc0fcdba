"""The report's own plots (per-prompt smoke latency, wall time per section and engine start)."""

from __future__ import annotations

from typing import Any

from .card import timing_rows
from .cells import md_escape
from .rundata import RunData
from .text import L


def make_plots(data: RunData, lang: str = "en") -> list[str]:
    """Two summary plots from records: per-prompt smoke latency and wall time per section/engine start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cjk = cjk_font(plt)
    if not cjk:  # no font for Chinese here: plot labels in English, non-Latin prompts by number only
        lang = "en"
    out: list[str] = []
    art = data.run_dir / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    prompts = data.rows("smoke", "prompts")
    if prompts:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(prompts) + 1.2))
        labels = [f"{i}. " + (md_escape(r.get("prompt", ""), 28).replace(" ⏎ ", " ")
                              if cjk or str(r.get("prompt", "")).isascii() else f"[{r.get('kind', '')}]")
                  for i, r in enumerate(prompts, 1)]
        ax.barh(range(len(prompts)), [r.get("latency_s") or 0 for r in prompts], color="#4c78a8")
        ax.set_yticks(range(len(prompts)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(L(lang, "latency_s"))
        ax.set_title(L(lang, "smoke_prompts"))
        fig.tight_layout()
        p = art / "report_smoke_latency.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        out.append(str(p.relative_to(data.run_dir)))
    rows = timing_rows(data, lang)
    if rows:
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
        colors = ["#f58518" if k == "engine" else "#54a24b" for _, k, _ in rows]
        ax.barh(range(len(rows)), [s for _, _, s in rows], color=colors)
        ax.set_yticks(range(len(rows)), [w[:40] for w, _, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(L(lang, "wall_s"))
        ax.set_title(L(lang, "sec_timing"))
        fig.tight_layout()
        p = art / "report_wall_times.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        out.append(str(p.relative_to(data.run_dir)))
    return out


def cjk_font(plt: Any) -> bool:
    """Use an installed CJK font when there is one, so Chinese prompts and labels are not boxes."""
    from matplotlib import font_manager

    for name in ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei",
                 "Droid Sans Fallback", "AR PL UMing CN"):
        if any(f.name == name for f in font_manager.fontManager.ttflist):
            plt.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            return True
    return False

