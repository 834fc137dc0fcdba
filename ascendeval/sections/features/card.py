"""The features section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from ...report.builder import CardBuilder, plots_of, table_of
from ...report.text import L, metric_label


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    b.add(f"## {L(lang, 'sec_features')}")
    if not b.status_line("features"):
        return
    m = {k: v for k, v in d.rec("features")["metrics"].items() if k not in ("steps", "engine_starts")}
    for k, v in m.items():
        b.add(f"### {metric_label(k, lang)}")
        table_of(b, "features", v if isinstance(v, (dict, list)) else {k: v})
    plots_of(b, "features")

