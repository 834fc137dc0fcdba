"""The `sections.precision` block of the params file (read by the precision section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...schema import Strict


class PrecisionThresholds(Strict):
    """Pass/fail limits of the precision verdict; null disables a check."""

    min_top1_agreement: float | None = Field(0.99, ge=0, le=1, description="teacher-forced top-1 agreement")
    min_topk_overlap: float | None = Field(0.9, ge=0, le=1, description="teacher-forced mean top-k overlap")
    min_mean_cosine: float | None = Field(0.99, ge=-1, le=1, description="mean cosine of logits (full vocab only)")
    max_mean_kl: float | None = Field(
        0.01, ge=0, description="mean KL(ref||target) in nats; on top-N-only targets, the renormalised KL on the returned ids"
    )
    max_mean_abs_ref_logprob_diff: float | None = Field(0.05, ge=0, description="mean |logprob diff| of the reference token")
    min_free_token_agreement: float | None = Field(None, ge=0, le=1, description="free-running greedy token agreement")


class PrecisionConfig(Strict):
    enabled: bool = True
    reference_device: Literal["cpu", "cuda", "npu"] = Field("cpu", description="where the transformers reference runs")
    reference_dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="reference precision")
    prompts: list[str] | None = Field(None, description="prompts; default: the shipped en/zh/code/arithmetic set")
    max_prompts: int | None = Field(None, gt=0, description="use only the first N prompts")
    max_new_tokens: int = Field(32, gt=0, description="reference greedy continuation length (and free-running length)")
    positions: Literal["all", "continuation"] = Field(
        "all", description="compare every next-token position of prompt+continuation, or the continuation only"
    )
    max_positions: int = Field(64, gt=0, description="per prompt, compare at most the last N positions")
    top_k: int = Field(5, gt=0, description="k of the top-k overlap")
    target_logprobs: int = Field(
        20, gt=0, description="top-N logprobs requested per position from vllm/openai targets (prompt_logprobs)"
    )
    hidden_states: bool = Field(True, description="per-layer hidden-state norms (hf targets)")
    free_running: bool = Field(True, description="greedy generation on both sides, first divergence")
    thresholds: PrecisionThresholds = Field(default_factory=PrecisionThresholds)

    @model_validator(mode="after")
    def _k_within_returned(self) -> "PrecisionConfig":
        if self.top_k > self.target_logprobs:
            raise ValueError(f"top_k ({self.top_k}) must be <= target_logprobs ({self.target_logprobs}): "
                             "the overlap needs the target's top-k")
        return self
