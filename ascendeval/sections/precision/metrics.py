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
    loaded_as: str | None  # reference_model.ReferencePlan.describe(): float32, or the fallback taken and why
    load_s: float
    generate_s: float
    num_prompts: int
    num_continuation_tokens: int
    num_sequence_tokens: int
    # "reference": generated token by token on the reference; "target_verified": the target's
    # greedy continuation checked by one reference forward, the reference generating from where
    # it would have chosen otherwise (steps.reference_continuations). Same continuations.
    continuations_from: Literal["reference", "target_verified"] | None = None
    reference_generated_tokens: int | None = None  # tokens the reference generated itself
    target_tokens_verified: int | None = None  # proposed tokens the reference's own choice confirmed


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


class DeploymentArm(MetricsModel):
    """`deployment.compare` for one arm (sections/precision/deployment.py): the arm against the
    baseline arm (`*_vs_baseline`) and against the float32 reference (the other figures)."""

    arm: str
    kind: str
    setting: str
    setting_zh: str | None = None
    status: Literal["ok", "failed", "not_run"]
    reason: str | None = None
    reason_zh: str | None = None
    engine_start_s: float | None = None  # None: the engine was already running (reused)
    reused_engine: bool | None = None
    via_shared_server: bool | None = None  # read through the run's shared server (the params' target, served)
    wall_s: float | None = None
    prefill_not_measured: str | None = None  # the engine refused prompt logprobs: why
    tf_num_positions: int | None = None
    tf_top1_agreement_vs_baseline: float | None = None
    tf_topk_overlap_vs_baseline: float | None = None
    tf_mean_abs_logprob_diff_vs_baseline: float | None = None
    tf_max_abs_logprob_diff_vs_baseline: float | None = None
    tf_mean_kl_common_vs_baseline: float | None = None
    top1_agreement: float | None = None
    topk_overlap: float | None = None
    mean_kl_returned_renorm: float | None = None
    mean_abs_ref_logprob_diff: float | None = None
    top1_drop_vs_reference: float | None = None
    num_prompts: int | None = None
    free_agreement_vs_baseline: float | None = None
    num_prompts_diverged: int | None = None
    first_divergence_min: int | None = None
    divergences_beyond_tie: int | None = None
    decode_mean_abs_logprob_diff_vs_baseline: float | None = None
    output_ref_top1_agreement: float | None = None
    free_agreement_vs_reference: float | None = None
    cached_tokens: int | None = None
    cached_tokens_miss: int | None = None
    verdict: Verdict | None = None


class FullVocab(MetricsModel):
    """`steps.full_vocab`: a vLLM target's full-vocabulary prompt logprobs vs the reference."""

    num_positions: int | None = None
    vocab_size: int | None = None
    wall_s: float | None = None
    peak_bytes: int | None = None
    mean_cosine_centered: float | None = None
    min_cosine_centered: float | None = None
    mean_kl: float | None = None
    max_kl: float | None = None
    top1_agreement: float | None = None


class Deployment(MetricsModel):
    arms: list[DeploymentArm]
    passed: bool | None
    wall_s: float
    tie_nats: float
    logprobs_requested: int


class PrecisionMetrics(SectionMetrics):
    engine_starts: list[EngineStart] | None = None
    reference: ReferenceEngine | None = None
    target: EngineInfo | None = None  # the target engine's info(), scalar values only
    teacher_forced: TeacherForced | None = None
    hidden_states: HiddenStates | None = None
    free_running: FreeRunning | None = None
    verdict: Verdict | None = None
    full_vocab: FullVocab | None = None
    deployment: Deployment | None = None
