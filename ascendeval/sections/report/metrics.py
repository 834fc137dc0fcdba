"""The `metrics` of `records/report.json`.

Filled by the report steps (`sections/report/steps.py`): `model_facts_step` -> model +
model_facts_from (the facts a section record already holds, else read from the model directory
here), `verify_step` -> verify; `steps` from context.SectionRun. The card and the index are files
(the record's artifacts), not metrics.
"""

from __future__ import annotations

from typing import Literal

from ascendeval.schema import MetricsModel, ModelFacts, SectionMetrics


class Verify(MetricsModel):
    """`ascendeval verify` over the run's other records."""

    checks_count: int
    problems_count: int
    problems: list[str]  # the first 50


class UpstreamKit(MetricsModel):
    """`report.upstream_kit.write`: the vLLM-Ascend pull-request files written from the run."""

    root: str  # under the run directory: upstream/vllm-ascend
    files: list[str]  # paths as in a vLLM-Ascend checkout
    config_written: bool  # False: lm-eval did not run, no accuracy config or report written
    ascend: bool  # measured on an Ascend NPU (otherwise every file says it was not)


class ReportMetrics(SectionMetrics):
    model: ModelFacts | None = None
    model_facts_from: Literal["smoke", "report", "performance"] | None = None  # the record the facts came from
    verify: Verify | None = None
    upstream_kit: UpstreamKit | None = None
