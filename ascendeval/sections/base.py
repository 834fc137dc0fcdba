"""What one section registers: the `Section` record the registry (sections/__init__.py) collects.

A leaf module, so a section package can declare itself without importing the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel


@dataclass(frozen=True)
class Section:
    name: str
    notebook: str  # notebooks/<notebook>.ipynb (paired with <notebook>.py)
    heading: str  # report label key of its card heading
    config: type[BaseModel]  # its params block, `sections.<name>` in params.yaml
    metrics: type[BaseModel] | None = None  # the model of its record's `metrics` (schema.MetricsModel)
    card: Callable[[Any], None] | None = None  # renders its part of the card into a report CardBuilder
    # (metrics, lang) -> (state, note) for a section that ran: pass / fail / warn / info and the
    # figure that decides it; None: a recorded `verdict.passed` decides, else info
    verdict: Callable[[dict[str, Any], str], tuple[str, str]] | None = None
    # (VerifyResult, record, run_dir): recompute its summaries from its raw rows (`ascendeval verify`)
    verify: Callable[[Any, dict[str, Any], Any], None] | None = None
    # whether it talks to a served model through SectionRun.served() without overrides, so it can
    # share one server per run instead of starting the same engine configuration again
    uses_shared_server: Callable[[Any], bool] | None = None
    # (metric key, dotted path in the record) shown for it in the index across runs
    index_metrics: tuple[tuple[str, str], ...] = ()
    has_verdict: bool = True  # the report itself is not judged in its own card
