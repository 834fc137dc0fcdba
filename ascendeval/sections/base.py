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
    card: str | None = None  # report function rendering its part of the card
    verify_rule: str | None = None  # verify function recomputing its summaries from raw rows
    # whether it talks to a served model through SectionRun.served() without overrides, so it can
    # share one server per run instead of starting the same engine configuration again
    uses_shared_server: Callable[[Any], bool] | None = None
    # (metric key, dotted path in the record) shown for it in the index across runs
    index_metrics: tuple[tuple[str, str], ...] = ()
    has_verdict: bool = True  # the report itself is not judged in its own card
