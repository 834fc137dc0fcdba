"""vLLM-Ascend's accuracy files: read its accuracy config as a baseline, compare as its CI does, and
write the files a model-support pull request adds.

The format is vLLM-Ascend's `tests/e2e/models/configs/<Model>.yaml`, read by
`tests/e2e/models/test_lm_eval_correctness.py`: model_name, model_type, hardware, serve{...},
tasks[{name, metrics[{name, value}]}], num_fewshot, limit, apply_chat_template,
fewshot_as_multiturn, batch_size. That test compares `round(measured, 4)` with the config's value
by `numpy.isclose(value, measured, rtol=0.05)`; absent flags default to true there, and so here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

RTOL = 0.05  # vLLM-Ascend's test_lm_eval_correctness.RTOL


class AccuracyMetric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # lm-eval's result key, "<metric>,<filter>" (exact_match,strict-match; acc,none)
    value: float


class AccuracyTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    metrics: list[AccuracyMetric] = Field(min_length=1)


class AccuracyConfig(BaseModel):
    # keys the upstream test does not read (envs, serve.block_size) are kept, not refused
    model_config = ConfigDict(extra="allow")
    model_name: str
    model_type: str = "vllm"
    hardware: str | None = None
    serve: dict[str, Any] = Field(default_factory=dict)
    tasks: list[AccuracyTask] = Field(min_length=1)
    num_fewshot: int | None = None
    limit: float | None = None
    apply_chat_template: bool = True
    fewshot_as_multiturn: bool = True
    batch_size: int | str = "auto"


def read_accuracy_config(path: str | Path) -> AccuracyConfig:
    """Parse a vLLM-Ascend accuracy config; ValueError with one line naming what is wrong."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"accuracy config {p}: no such file (a vLLM-Ascend tests/e2e/models/configs/<Model>.yaml)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"accuracy config {p}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"accuracy config {p}: expected a mapping with model_name and tasks")
    try:
        return AccuracyConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"accuracy config {p}: {where}: {err['msg']} (needs model_name and "
                         "tasks: [{name, metrics: [{name, value}]}])") from None


def compare(cfg: AccuracyConfig, measured: dict[tuple[str, str], float], rtol: float = RTOL) -> list[dict[str, Any]]:
    """One row per metric of the config: the config's value against round(measured, 4), as
    vLLM-Ascend's CI judges it. `measured` maps (task, "<metric>,<filter>") to the value."""
    import numpy as np

    rows = []
    for task in cfg.tasks:
        for m in task.metrics:
            got = measured.get((task.name, m.name))
            row: dict[str, Any] = {"task": task.name, "metric": m.name, "expected_value": m.value, "rtol": rtol}
            if got is None:
                rows.append({**row, "measured": None, "passed": None,
                             "reason": f"{task.name} has no {m.name} in this run's lm-eval results"})
                continue
            got = round(float(got), 4)
            rows.append({**row, "measured": got, "passed": bool(np.isclose(m.value, got, rtol=rtol)),
                         "reason": None})
    return rows
