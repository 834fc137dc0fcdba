"""The published report: the model page (README.md + HTML), the full report (report.md, and
report.html with every section notebook), the cross-run index.

Everything here READS records (`records/*.json` and their `.jsonl` sidecars) and `run.json`; it
never measures. Every number in the card is printed from a record of the same run and every table
names the record (and notebook) it came from, so a reader can trace it. Things that were not
measured are said to be not measured (never 0), with the reason the record gives.

One module per concern: `text` (the card's words, data/card_text.yaml, and labels from the metric
catalog), `cells` (value formatting, Markdown tables), `rundata` (one run directory), `builder` (the
card under construction), `verdicts`, `deploy` (quick-deploy commands), `card` (the run-level parts
around each section's own part, which its package renders), `plots`, `html`, `index`. This module
names the public API.
"""

from .builder import Card, CardBuilder
from .card import build_card
from .cells import fmt, get, human_params, md_escape, md_table
from .deploy import deploy_commands
from .html import markdown_to_html, write_card, write_run_html
from .index import build_index, find_runs, index_rows
from .page import build_page
from .rundata import RunData, load_run, recorded_model_facts
from .text import L, metric_label, section_label, verdict_label
from .verdicts import Verdict, not_measured, section_verdict

__all__ = [
    "Card", "CardBuilder", "RunData", "Verdict", "L", "build_card", "build_index", "build_page", "deploy_commands", "find_runs",
    "fmt", "get", "human_params", "index_rows", "load_run", "markdown_to_html", "md_escape", "md_table",
    "metric_label", "not_measured", "recorded_model_facts", "section_label", "section_verdict", "verdict_label",
    "write_card", "write_run_html",
]
