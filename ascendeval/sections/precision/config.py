"""The `sections.precision` block of the params file (read by the precision section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Any, Literal

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


ARM_KINDS = ("graph", "chunked_prefill", "prefix_cache", "speculative", "batch", "tensor_parallel", "pd_split")


class DeploymentThresholds(Strict):
    """Pass/fail limits of one deployment arm against the baseline arm; null disables a check."""

    min_top1_vs_baseline: float | None = Field(
        0.98, ge=0, le=1, description="teacher-forced top-1 agreement with the baseline arm")
    max_mean_abs_logprob_diff_vs_baseline: float | None = Field(
        0.05, ge=0, description="teacher-forced mean |logprob difference| of the sequence's token vs the baseline")
    max_divergences_beyond_tie: int | None = Field(
        0, ge=0, description="free-running: prompts whose first divergence from the baseline happened where the "
                             "baseline preferred its token by more than tie_nats (a flip that is no near tie)")
    max_top1_drop_vs_reference: float | None = Field(
        0.02, ge=0, le=1, description="teacher-forced top-1 agreement with the float32 reference may fall below "
                                      "the baseline's by at most this")


class CustomArm(Strict):
    """One more arm: engine arguments (and optionally another weights folder) against the baseline."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,40}$")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="vllm.LLM arguments over the target's")
    model_path: str | None = Field(None, description="another weights folder (e.g. a quantized copy); default: "
                                                     "the params' model")


class DeploymentConfig(Strict):
    """The deployment matrix: does a deployment setting change the outputs? (sections/precision/deployment.py)"""

    enabled: bool = True
    arms: list[Literal[ARM_KINDS]] | None = Field(  # type: ignore[valid-type]
        None, description="which arms to run; null: every arm that applies to the target. Arms left out are "
                          "listed with the reason")
    chunk_tokens: int = Field(16, ge=8, description="max_num_batched_tokens of the chunked-prefill arm: the prefill "
                                                    "of every compared sequence is split into chunks this long")
    dtypes: list[Literal["float16", "bfloat16", "float32"]] = Field(
        default_factory=list, description="more model dtypes, one arm each")
    kv_cache_dtypes: list[str] = Field(default_factory=list, description="KV-cache dtypes (vLLM kv_cache_dtype, "
                                                                         "e.g. fp8), one arm each")
    custom: list[CustomArm] = Field(default_factory=list)
    tie_nats: float = Field(0.5, gt=0, description="a free-running divergence where the baseline preferred its "
                                                   "token by at most this is a near tie")
    full_vocab_positions: int = Field(
        32, ge=0, description="vLLM targets: positions whose full-vocabulary logprobs are requested from the "
                              "baseline (cosine, KL over the whole vocabulary); 0: off. Memory: positions x vocab")
    thresholds: DeploymentThresholds = Field(default_factory=DeploymentThresholds)


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
    target_via: Literal["auto", "server", "offline"] = Field(
        "auto", description="how a vllm target is read: server = the run's shared server (prompt logprobs, the "
                            "full vocabulary and greedy continuations over the deployment's own API, no second "
                            "start of the same configuration), offline = an offline engine of the section; auto = "
                            "the shared server when the run has one, else offline")
    server_concurrency: int = Field(8, gt=0, description="requests in flight when the target is served")
    free_running: bool = Field(True, description="greedy generation on both sides, first divergence")
    thresholds: PrecisionThresholds = Field(default_factory=PrecisionThresholds)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)

    @model_validator(mode="after")
    def _k_within_returned(self) -> "PrecisionConfig":
        if self.top_k > self.target_logprobs:
            raise ValueError(f"top_k ({self.top_k}) must be <= target_logprobs ({self.target_logprobs}): "
                             "the overlap needs the target's top-k")
        return self
