"""What one section registers: the `Section` record the registry (sections/__init__.py) collects.

A leaf module, so a section package can declare itself without importing the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, get_args

from pydantic import BaseModel


@dataclass(frozen=True)
class Section:
    name: str
    notebook: str  # notebooks/<notebook>.ipynb (paired with <notebook>.py)
    heading: str  # report label key of its card heading
    config: type[BaseModel]  # its params block, `sections.<name>` in params.yaml
    metrics: type[BaseModel] | None = None  # the model of its record's `metrics` (schema.MetricsModel)
    card: Callable[[Any], None] | None = None  # renders its part of the card into a report CardBuilder
    # (typed metrics, its params block as recorded, lang) -> report.verdicts.Summary for a section
    # that ran: its verdict with the deciding figure, the figures of the model page with their
    # conditions, one sentence of the conclusion; None: a recorded `verdict.passed` decides
    summary: Callable[[Any, dict[str, Any], str], Any] | None = None
    # (VerifyResult, record, run_dir): recompute its summaries from its raw rows (`ascendeval verify`)
    verify: Callable[[Any, dict[str, Any], Any], None] | None = None
    # whether it talks to a served model through SectionRun.served() without overrides, so it can
    # share one server per run instead of starting the same engine configuration again
    uses_shared_server: Callable[[Any], bool] | None = None
    # (params, model path) -> vLLM engine arguments the shared server needs for this section's
    # reads and that change no figure (e.g. max_logprobs); merged over every user's
    shared_server_overrides: Callable[[Any, Any], dict[str, Any]] | None = None
    # (metric key, attribute path in its metrics model) shown for it in the index across runs;
    # each path is checked against the model when the section registers
    index_metrics: tuple[tuple[str, str], ...] = ()
    has_verdict: bool = True  # the report itself is not judged in its own card


    def __post_init__(self) -> None:
        for key, path in self.index_metrics:
            if self.metrics is None:
                raise TypeError(f"section {self.name}: index metric {key} needs a metrics model")
            _field_type(self.metrics, path)  # raises naming the attribute that does not exist

    def read(self, metrics: BaseModel | None, path: str) -> Any:
        """The value at attribute `path` of a typed metrics object; None where a block on the way
        was not measured, or where the union member the record holds has no such figure (a
        vLLM target's teacher-forced scope has no full-vocabulary cosine). The path itself was
        checked against the model at registration, so a misspelling cannot hide here."""
        cur: Any = metrics
        for part in path.split("."):
            cur = getattr(cur, part, None)
        return cur


def _field_type(model: type[BaseModel], path: str) -> list[Any]:
    """The annotations at attribute `path` of `model`, through Optional blocks and unions (any
    member that has the attribute)."""
    cur: list[Any] = [model]
    for part in path.split("."):
        found = [m.model_fields[part].annotation for m in _models_in(cur) if part in m.model_fields]
        if not found:
            raise AttributeError(f"{model.__name__} has no attribute path {path!r} (at {part!r})")
        cur = found
    return cur


def _models_in(annotations: list[Any]) -> list[type[BaseModel]]:
    """The pydantic models inside annotations (X | None, Annotated[A | B, ...], ...)."""
    out: list[type[BaseModel]] = []
    todo = list(annotations)
    while todo:
        a = todo.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
        else:
            todo.extend(get_args(a))
    return out
