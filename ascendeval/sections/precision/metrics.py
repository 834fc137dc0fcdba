"""The `metrics` of `records/precision.json`.

Filled by `record` in `sections/precision/steps.py` (one `run.add` per block, after every value
passed `precision_metrics.validate_ranges`): reference, target, teacher_forced (the summary of
`precision_metrics.summarize_positions` + wall time), hidden_states (hf targets with hidden states
on), free_running, verdict. `engine_starts` and `steps` come from context.SectionRun (the reference
and target engines).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ascendeval.schema import EngineInfo, EngineStart, MetricsModel, SectionMetrics


class ReferenceEngine(MetricsModel):
    """`Reference.info()`: the float32 transformers reference and the sequences it produced."""

    engine: Literal["hf"]
    device: str
    dtype: str
    load_s: float
    generate_s: float
    num_prompts: int
    num_continuation_tokens: int
    num_sequence_tokens: int


class _TeacherForced(MetricsModel):
    """What both scopes report (`precision_metrics.summarize_positions`). Rates are over all
    positions; distribution figures over the positions whose target was finite (None: none was)."""

    num_positions: int
    num_nonfinite_positions: int
    top1_agreement: float | None
    topk_overlap: float | None
    mean_ref_logprob_diff: float | None
    mean_abs_ref_logprob_diff: float | None
    max_abs_ref_logprob_diff: float | None
    num_prompts: int
    wall_s: float


class TeacherForcedFull(_TeacherForced):
    """Scope full_vocab: both sides' full logits (an hf target)."""

    scope: Literal["full_vocab"]
    mean_cosine: float | None
    min_cosine: float | None
    mean_mse: float | None
    mean_logit_max_abs: float | None
    logit_max_abs: float | None
    mean_kl: float | None
    max_kl: float | None
    p99_kl: float | None


class TeacherForcedReturned(_TeacherForced):
    """Scope target_returned: the target gave its top-N prompt logprobs only (vllm, openai);
    distribution figures are over the returned ids, renormalised there, and say so in the key."""

    scope: Literal["target_returned"]
    mean_cosine_centered_returned: float | None
    min_cosine_centered_returned: float | None
    mean_mse_returned: float | None
    logprob_max_abs_returned: float | None
    mean_kl_returned_renorm: float | None
    max_kl_returned_renorm: float | None
    mean_ref_mass_returned: float | None
    target_logprobs_requested: int  # N asked of the target


TeacherForced = Annotated[TeacherForcedFull | TeacherForcedReturned, Field(discriminator="scope")]


class HiddenLayer(MetricsModel):
    """`HiddenStateAccumulator.rows()`: one hidden_states index (0 = embeddings)."""

    layer: int
    ref_mean_norm: float
    target_mean_norm: float
    rel_diff: float | None  # ||target - ref|| / ||ref||; None where the reference is all zeros


class HiddenStates(MetricsModel):
    note: str  # which hidden_states index is which layer (HIDDEN_LAYER_NOTE)
    layers: list[HiddenLayer]


class FreeRunning(MetricsModel):
    """Greedy continuations of both sides from the same prompts."""

    num_prompts: int
    num_prompts_diverged: int
    free_token_agreement: float | None  # None: nothing compared
    free_prefix_agreement: float | None
    num_compared_tokens: int


class Check(MetricsModel):
    """`precision_metrics.Check.as_dict()`: one threshold of the params."""

    metric: str  # a key of teacher_forced / free_running
    op: Literal[">=", "<=", "=="]
    threshold: float
    measured: float | None  # None: not measured, so neither pass nor fail
    passed: bool | None


class Verdict(MetricsModel):
    passed: bool | None  # None: no check could be measured
    checks: list[Check]


class PrecisionMetrics(SectionMetrics):
    engine_starts: list[EngineStart] | None = None
    reference: ReferenceEngine | None = None
    target: EngineInfo | None = None  # the target engine's info(), scalar values only
    teacher_forced: TeacherForced | None = None
    hidden_states: HiddenStates | None = None
    free_running: FreeRunning | None = None
    verdict: Verdict | None = None
