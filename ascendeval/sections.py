"""The section registry: each section of the workbook declared once, in run order.

`config` (which section names exist), `runner` (which notebook runs it, whether it may use the
run's shared server), `report` (card heading, card renderer, verdict, index columns) and `verify`
(the rule that recomputes its summaries) all read this table instead of keeping lists of their
own. Renderers and rules are named here and looked up in their module when used, so this module
imports nothing heavy and every other module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Section:
    name: str
    notebook: str  # notebooks/<notebook>.ipynb (paired with <notebook>.py)
    heading: str  # report.LABELS key of its card heading
    card: str | None = None  # report function rendering its part of the card
    verify_rule: str | None = None  # verify function recomputing its summaries from raw rows
    # whether it talks to a served model through SectionRun.served() without overrides, so it can
    # share one server per run instead of starting the same engine configuration again
    uses_shared_server: Callable[[Any], bool] | None = None
    # (metric key, dotted path in the record) shown for it in the index across runs
    index_metrics: tuple[tuple[str, str], ...] = ()
    has_verdict: bool = True  # the report itself is not judged in its own card


SECTIONS: tuple[Section, ...] = (
    Section("environment", "00_environment", "sec_env", card="_sec_env"),
    Section("smoke", "01_smoke", "sec_smoke", card="_sec_smoke", verify_rule="rule_smoke",
            uses_shared_server=lambda cfg: cfg.sections.smoke.serve,
            index_metrics=(("load_s", "metrics.load.load_s"),)),
    Section("performance", "02_performance", "sec_performance", card="_sec_performance",
            verify_rule="rule_performance",
            uses_shared_server=lambda cfg: (cfg.sections.performance.serving.enabled
                                            and not cfg.sections.performance.serving.url),
            index_metrics=(("output_tok_per_s", "metrics.serving_main.output_tok_per_s"),
                           ("p99_ttft_ms", "metrics.serving_main.p99_ttft_ms"),
                           ("generation_tok_per_s", "metrics.latency.generation_tok_per_s"))),
    Section("precision", "03_precision", "sec_precision", card="_sec_precision", verify_rule="rule_precision",
            index_metrics=(("top1_agreement", "metrics.teacher_forced.top1_agreement"),
                           ("mean_cosine", "metrics.teacher_forced.mean_cosine"))),
    Section("quality", "04_quality", "sec_quality", card="_sec_quality", verify_rule="rule_quality",
            index_metrics=(("overall_pass_rate", "metrics.suites.overall_pass_rate"),)),
    # the served speculative A/B's baseline arm (its ngram arm needs its own server)
    Section("features", "05_features", "sec_features", card="_sec_features",
            uses_shared_server=lambda cfg: cfg.sections.features.speculative and cfg.sections.features.spec_served),
    Section("report", "06_report", "sec_report", has_verdict=False),
)

NAMES: tuple[str, ...] = tuple(s.name for s in SECTIONS)
JUDGED: tuple[str, ...] = tuple(s.name for s in SECTIONS if s.has_verdict)
_BY_NAME = {s.name: s for s in SECTIONS}


def get(name: str) -> Section:
    """The section called `name`; KeyError names the allowed ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown section {name!r}; allowed: {', '.join(NAMES)}") from None


def index_metrics() -> list[tuple[str, str, str]]:
    """(metric key, section, dotted path) of every index column, in section order."""
    return [(key, s.name, path) for s in SECTIONS for key, path in s.index_metrics]
