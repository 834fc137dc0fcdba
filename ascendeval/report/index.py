"""The cross-run index (outputs/index.md and index.html): every run side by side with its verdicts,
the metrics each section declares for the index, and versions."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import records

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from .cells import Raw, fmt, get, md_table
from .html import markdown_to_html
from .rundata import find_runs, load_run
from .text import STATE_ICON, L, metric_label, section_label
from .verdicts import section_verdict


def index_rows(outputs: str | Path, lang: str = "en") -> list[dict[str, Any]]:
    rows = []
    for run_dir in find_runs(outputs):
        d = load_run(run_dir)
        if not d.records:
            continue
        any_rec = d.any_record()
        env = any_rec.get("env", {})
        tgt = any_rec.get("target", {})
        row: dict[str, Any] = {
            "model": get(any_rec, "model.name") or get(any_rec, "model.id"),
            "run_id": d.run_id, "date": (any_rec.get("created_at") or "")[:16].replace("T", " "),
            "target": f"{tgt.get('engine')}/{tgt.get('device')}×{tgt.get('count')}",
            "dtype": get(any_rec, "model.dtype"),
            "vllm": env.get("vllm"), "torch": env.get("torch"), "cann": env.get("cann"),
            "git": (any_rec.get("git_hash") or "")[:12],
            "rel": str(run_dir.relative_to(Path(outputs))),
        }
        for s in sections_mod.JUDGED:
            v = section_verdict(d, s, lang)
            row[f"v_{s}"] = v.state
        for key, section, path in sections_mod.index_metrics():
            try:
                row[key] = sections_mod.get(section).read(d.metrics(section), path)
            except ValidationError:  # a record that does not fit: its verdict says so
                row[key] = None
        rows.append(row)
    rows.sort(key=lambda r: (r["model"] or "", r["run_id"]), reverse=False)
    return rows


def build_index(outputs: str | Path, lang: str = "en") -> dict[str, str]:
    """outputs/index.md and outputs/index.html: every run side by side (verdicts, key metrics, versions)."""
    outputs = Path(outputs)
    rows = index_rows(outputs, lang)
    head = [L(lang, k) for k in ("idx_model", "idx_run", "idx_date", "idx_target", "idx_dtype")] \
        + [section_label(s, lang) for s in sections_mod.JUDGED] \
        + [metric_label(k, lang) for k, _, _ in sections_mod.index_metrics()] + ["vLLM", "torch", "CANN", "git"]
    table = []
    for r in rows:
        link = f"{r['rel']}/README.md"
        html_link = f"{r['rel']}/report.html" if (outputs / r["rel"] / "report.html").is_file() else f"{r['rel']}/README.html"
        table.append([r["model"], Raw(f"[{r['run_id']}]({link}) ([html]({html_link}))"), r["date"], r["target"],
                      r["dtype"]] + [STATE_ICON.get(r[f"v_{s}"], "—") for s in sections_mod.JUDGED]
                     + [fmt(r[k], k) for k, _, _ in sections_mod.index_metrics()]
                     + [r["vllm"] or "—", r["torch"] or "—", r["cann"] or "—", r["git"] or "—"])
    title, legend = L(lang, "idx_title"), L(lang, "idx_legend")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    md = f"# {title}\n\n{legend}\n\n" + (md_table(head, table) or "(no runs)") + f"\n\n<sub>{now} · {len(rows)} run(s)</sub>\n"
    outputs.mkdir(parents=True, exist_ok=True)
    records._atomic_write(outputs / "index.md", md)
    # the HTML index links to the HTML cards, the Markdown index to the Markdown ones
    records._atomic_write(outputs / "index.html", markdown_to_html(md.replace("/README.md)", "/README.html)"), title))
    return {"markdown": str(outputs / "index.md"), "html": str(outputs / "index.html"), "runs": str(len(rows))}

