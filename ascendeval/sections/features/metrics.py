"""The `metrics` of `records/features.json`.

Filled by the features steps, one module per feature in `sections/features/` and one block per
feature A/B: `common.start_main` -> main_engine, `prefix_cache` -> prefix_caching and
prefix_caching_off, `pd_split` -> pd_split and disaggregated_prefill, `long_context` ->
long_context and chunked_prefill (the chunked-off sweep), `capacity` -> capacity, `speculative` ->
speculative and speculative_served, `served` (a running deployment, target.engine openai) ->
prefix_caching_served and speculative_server, `op_scan` -> opscan (`opscan.scan(...).summary`).
`engine_starts` and `steps` come from context.SectionRun. Counter figures (`prefix_cache_hits`,
`num_drafts`, ...) are sums of vLLM's Prometheus counters, which are floats; None where this vLLM
does not report the counter.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ascendeval.schema import (
    EngineStart,
    GuardResult,
    MetricsModel,
    SectionMetrics,
    VllmEngineInfo,
)

# --------------------------------------------------------------------------- prefix caching


class PrefixArm(MetricsModel):
    """One arm: the prompts one at a time (TTFT, counters), then a fresh batch of the same shape."""

    prefix_cache_queries: float | None  # counter deltas over the one-at-a-time pass
    prefix_cache_hits: float | None
    prefix_cache_hit_rate: float | None
    num_cached_tokens: int  # RequestOutput.num_cached_tokens, summed
    mean_ttft_ms: float | None  # None: the engine stamped no first token
    mean_prefill_ms: float | None
    mean_e2e_ms: float
    batch_elapsed_s: float
    batch_total_tok_per_s: float
    batch_output_tok_per_s: float
    batch_req_per_s: float
    batch_prefix_cache_hits: float | None
    batch_num_cached_tokens: int


class PrefixCaching(MetricsModel):
    distinct_prefix: PrefixArm
    shared_prefix: PrefixArm
    prompt_len: int
    shared_prefix_len: int
    num_prompts: int
    ttft_speedup: float | None  # distinct / shared
    prefill_speedup: float | None
    throughput_speedup: float | None
    speedup_backed_by_counters: bool  # the counters show the hits that explain the speed-up


class PrefixCachingOff(MetricsModel):
    """The shared-prefix arm on an engine with caching off."""

    shared_prefix_caching_off: PrefixArm
    ttft_speedup_vs_caching_off: float | None


# --------------------------------------------------------------------------- speculative decoding


class SpeculativeConfig(MetricsModel):
    """`spec_config`: vLLM's speculative_config for one method."""

    num_speculative_tokens: int
    method: Literal["ngram", "draft_model", "eagle", "eagle3"]
    prompt_lookup_min: int | None = None  # ngram
    prompt_lookup_max: int | None = None  # ngram
    model: str | None = None  # draft model / EAGLE head


class Acceptance(MetricsModel):
    """`acceptance`: from the engine's vllm:spec_decode_* counters (vLLM's definitions)."""

    num_drafts: float | None
    num_draft_tokens: float | None
    num_accepted_tokens: float | None
    acceptance_rate: float | None
    mean_acceptance_length: float | None
    per_position_acceptance_rate: list[float] | None


class SpeculativeBaseline(MetricsModel):
    """The main engine without speculation, same prompts."""

    elapsed_s: float
    output_tokens: int
    output_tok_per_s: float


class SpeculativeMethod(Acceptance):
    status: Literal["ok"]
    speculative_config: SpeculativeConfig
    elapsed_s: float
    output_tokens: int
    output_tok_per_s: float
    e2e_speedup: float | None
    same_as_baseline_outputs: int  # prompts with the baseline's greedy tokens
    same_as_baseline_rate: float


class SpeculativeMethodFailed(MetricsModel):
    """The method's engine did not start (the other methods still ran)."""

    status: Literal["failed"]
    reason: str


SpecMethod = Annotated[SpeculativeMethod | SpeculativeMethodFailed, Field(discriminator="status")]


class Speculative(MetricsModel):
    baseline: SpeculativeBaseline
    num_prompts: int
    # one entry per method in the params (features.spec_methods)
    ngram: SpecMethod | None = None
    draft_model: SpecMethod | None = None
    eagle: SpecMethod | None = None
    eagle3: SpecMethod | None = None


class ServedArm(MetricsModel):
    """One server's figures from `loadgen.LoadRun.metrics` (one request at a time)."""

    mean_ttft_ms: float | None
    mean_tpot_ms: float | None
    mean_e2el_ms: float | None
    output_tok_per_s: float | None
    completed_count: int
    failed_count: int


class ServedSpecArm(ServedArm, Acceptance):
    """The ngram server: its figures and the acceptance from its /metrics counters."""


class SpeculativeServed(MetricsModel):
    baseline: ServedArm
    ngram: ServedSpecArm
    e2el_speedup: float | None
    tpot_speedup: float | None
    num_prompts: int


class SpeculativeServer(Acceptance):
    """A running deployment's own speculative decoding (`served.speculative_server`): acceptance
    from its /metrics counters over copy-friendly prompts sent one at a time."""

    num_prompts: int
    mean_tpot_ms: float | None


class ServedPrefixArm(MetricsModel):
    """One arm through a deployment's API (`served.prefix_caching_served`): the streaming client's
    TTFT and the server's own evidence."""

    mean_ttft_ms: float | None
    median_ttft_ms: float | None
    prefix_cache_queries: float | None  # /metrics counter deltas; None: the server serves no /metrics
    prefix_cache_hits: float | None
    prefix_cache_hit_rate: float | None
    cached_tokens: int | None  # usage.prompt_tokens_details.cached_tokens summed; None: not reported


class PrefixCachingServed(MetricsModel):
    distinct_prefix: ServedPrefixArm
    shared_prefix: ServedPrefixArm
    prompt_len: int
    shared_prefix_len: int
    num_prompts: int
    ttft_speedup: float | None  # distinct / shared
    speedup_backed_by_counters: bool  # the server's counters or cached_tokens show the hits


# --------------------------------------------------------------------------- prefill / decode


class PdMix(MetricsModel):
    """One input/output length mix: means over its requests of the engine's own timestamps
    (pandas aggregation; None where no request reported the figure)."""

    mix: str  # "<input>/<output>"
    input_len: int
    output_len: int
    requests: int
    mean_queue_ms: float | None
    mean_prefill_ms: float | None
    mean_decode_ms: float | None
    mean_tpot_ms: float | None
    mean_prefill_share: float | None
    cached_tokens: float | None  # a pandas sum: an int, a float where some requests reported none
    prefill_tok_per_s: float | None


class PdSplit(MetricsModel):
    mixes: list[PdMix]
    dropped_mixes: list[list[int]]  # [input, output] pairs longer than max_model_len


class DisaggregatedPrefill(MetricsModel):
    """Prefill server + decode server behind the proxy vs one ordinary server, same prompts."""

    kv_connector: str
    topology: str
    input_len: int
    output_len: int
    num_prompts: int
    kv_store_bytes: int  # what the connector wrote (file-based connectors)
    external_prefix_cache_queries: float | None  # the decode server's counters
    external_prefix_cache_hits: float | None
    kv_loaded_tokens: int | None
    mean_single_ttft_ms: float | None
    mean_disagg_ttft_ms: float | None
    mean_prefill_instance_ms: float | None
    mean_decode_first_token_ms: float | None
    mean_single_tpot_ms: float | None
    mean_disagg_tpot_ms: float | None
    same_as_single_rate: float | None  # disaggregated output = the single server's, per prompt


# --------------------------------------------------------------------------- long context


class LongContextPoint(MetricsModel):
    """One input length: the median-TTFT request of the repeats."""

    input_len: int
    prefill_chunks: int  # scheduler steps the prefill took (the step budget splits it)
    ttft_ms: float | None
    ttft_ms_min: float | None
    ttft_ms_max: float | None
    prefill_ms: float | None
    tpot_ms: float | None
    decode_tok_per_s: float | None
    prefill_tok_per_s: float | None


class LongContext(MetricsModel):
    mode: Literal["chunked_on", "chunked_off"]
    lengths: list[int]  # lengths run (the cap added when something was dropped)
    dropped_lengths: list[int]
    max_num_batched_tokens: int | None
    chunked_lengths: list[int]  # lengths whose prefill took more than one step
    points: list[LongContextPoint]


class ChunkedPoint(MetricsModel):
    input_len: int
    prefill_chunks_on: int
    ttft_ms_chunked_on: float | None
    ttft_ms_chunked_off: float | None
    tpot_ms_chunked_on: float | None
    tpot_ms_chunked_off: float | None


class ChunkedPrefill(MetricsModel):
    """The long-context sweep again with chunked prefill off, beside the chunked-on figures."""

    lengths: list[int]
    points: list[ChunkedPoint]


# --------------------------------------------------------------------------- capacity


class CapacityPoint(MetricsModel):
    seq_len: int
    kv_max_concurrent_seqs: int  # from the engine's block count
    batch_run: int
    completed: int
    preemptions: int | None  # None: this vLLM does not report preemptions (not zero)
    kv_fraction_used: float
    elapsed_s: float
    output_tok_per_s: float
    rss_after_bytes: int
    rss_delta_bytes: int  # may be negative
    batch_limited_by: Literal["kv_cache", "max_num_seqs", "capacity_max_batch"]


class Capacity(MetricsModel):
    kv_cache_blocks: int
    block_size: int
    kv_cache_tokens: int | None
    kv_cache_memory_bytes: int | None  # target.kv_cache_memory_bytes of the params
    kv_max_concurrency_at_max_model_len: float | None
    points: list[CapacityPoint]
    dropped_lengths: list[int]


# --------------------------------------------------------------------------- opscan


class VllmArchitecture(MetricsModel):
    """`opscan.vllm_architecture`: is the architecture in vLLM's model registry."""

    architecture: str
    supported: bool | None  # None: vllm not importable
    reason: str | None = None  # not supported / unknown
    module: str | None = None  # supported
    class_: str | None = Field(None, alias="class")  # supported: the registry's class name


class Opscan(MetricsModel):
    """`opscan.scan(...).summary`: operator compatibility of the model for the target device."""

    model_dir: str
    device: Literal["cpu", "cuda", "npu"]
    architectures: list[str]
    model_type: str | None
    auto_map: bool  # config.json names remote code
    vllm_architectures: list[VllmArchitecture]
    platform_custom_ops: str | None  # None: no architecture vLLM supports
    # the aten trace (opscan_trace on): "ok" with the counts, or "failed: <why>" without them
    aten_trace: str | None = None
    aten_cpu_lowerings_left_out: list[str] | None = None
    aten_ops: int | None = None
    aten_ops_without_kernel: int | None = None
    aten_kernels_checked: str | None = None
    cuda_only_count: int
    triton_only_count: int
    custom_kernel_count: int
    required_vendor_deps: list[str]
    vllm_custom_ops: int
    vllm_custom_ops_device_kernel: int
    vllm_custom_ops_native_fallback: int
    vllm_custom_ops_missing: int


class FeaturesMetrics(SectionMetrics):
    engine_starts: list[EngineStart] | None = None
    main_engine: VllmEngineInfo | None = None
    prefix_caching: PrefixCaching | None = None
    prefix_caching_off: PrefixCachingOff | None = None
    prefix_caching_served: PrefixCachingServed | None = None  # a running deployment (target.engine openai)
    pd_split: PdSplit | None = None
    disaggregated_prefill: DisaggregatedPrefill | None = None
    long_context: LongContext | None = None
    chunked_prefill: ChunkedPrefill | None = None
    capacity: Capacity | None = None
    speculative: Speculative | None = None
    speculative_served: SpeculativeServed | None = None
    speculative_server: SpeculativeServer | None = None  # a running deployment's own speculative decoding
    opscan: Opscan | None = None
    # the output guard (output_guard.py): per figure, whether the outputs it timed were sane
    output_guard: dict[str, GuardResult] | None = None
