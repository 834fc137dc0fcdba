"""The `sections.performance` block of the params file (read by the performance section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ...schema import Strict


class PerfLatencyConfig(Strict):
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


class PerfThroughputConfig(Strict):
    """`vllm bench throughput`: all prompts submitted at once; harness vs bare LLM.generate."""

    num_prompts: int = Field(32, gt=0)
    input_len: int = Field(64, gt=0)
    output_len: int = Field(32, gt=0)
    repeats: int = Field(2, gt=0, description="alternating harness/bare runs; medians are compared")


class PerfSplitConfig(Strict):
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


class PerfGraphConfig(Strict):
    """The latency/throughput workload with enforce_eager true and false (vLLM engines only)."""

    enabled: bool = Field(True, description="compiled mode starts slowly on CPU (~40 s cold)")


class PerfCapacityConfig(Strict):
    """Capacity under an SLO (slo_capacity.py): the highest request rate and concurrency at which at
    least `target_share` of requests meet the serving SLOs (params' slo_*_ms, else multiples of a
    single-request baseline)."""

    enabled: bool = True
    target_share: float = Field(0.99, gt=0, le=1, description="share of requests that must meet every SLO")
    ttft_x_baseline: float | None = Field(5.0, gt=1, description="default TTFT SLO: this times the "
                                          "single-request median TTFT (used when no slo_*_ms is set)")
    tpot_x_baseline: float | None = Field(2.0, gt=1, description="default TPOT SLO, times the single-request median")
    e2el_x_baseline: float | None = Field(None, gt=1, description="default E2EL SLO, times the single-request "
                                          "median; null: no E2EL objective")
    baseline_requests: int = Field(4, gt=0, description="requests sent one at a time for the baseline")
    probe_requests: int = Field(16, gt=0, description="requests per probe (a concurrency probe sends at least "
                                "two per slot)")
    request_budget: int = Field(240, gt=0, description="requests the whole search may send, split evenly "
                                "between the rate and the concurrency search")
    resolution: float = Field(0.15, gt=0, description="rate search stops when the first failing rate is "
                              "within this fraction above the last passing one")
    max_rate: float = Field(10000.0, gt=0, description="the rate search starts no higher than this")
    search: list[Literal["rate", "concurrency"]] = Field(default_factory=lambda: ["rate", "concurrency"])
    settle_max_s: float = Field(2.0, ge=0, description="quiet-host wait before each probe (at most)")


class PerfLoadgenConfig(Strict):
    """The serving client itself (loadgen.py): which transport sends the requests, and the run-time
    check of its own error against the in-package simulated server at the planned rates."""

    transport: Literal["fast", "aiohttp"] = Field("fast", description="fast: the package's HTTP/1.1 client "
                                                  "(chunks timed in the socket callback); aiohttp: aiohttp's "
                                                  "client, as vLLM's benchmark uses")
    calibrate: bool = Field(True, description="before the serving points, measure the client's own share of "
                            "TTFT against the simulated server at the planned rates")
    calibration_seconds_per_rate: float = Field(1.0, gt=0, description="requests per calibration rate: at most "
                                                "rate x this (at least calibration_min_requests)")
    calibration_min_requests: int = Field(8, gt=0, description="requests per calibration rate, at least")


class PerfServingConfig(Strict):
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
    repeats: int = Field(3, gt=0, description="every load point is measured this many times, in rounds over all "
                         "points; a point's figures pool its repeats, and their spread is the noise the card "
                         "states (1: no noise measured)")
    warmup_requests: int = Field(2, ge=0, description="sent before each timed run, excluded from metrics")
    warmup_output_len: int | None = Field(
        2, ge=1, description="output tokens of each warm-up request (a prefill and a decode step warm the server "
                             "and the connections); null: output_len, as the timed requests")
    settle_max_s: float = Field(20.0, ge=0, description="before each point, wait (at most this long) for the host's "
                                "CPUs to go quiet: what ran just before must not be timed as the server; 0: no wait")
    warmup_load: bool = Field(False, description="before the first point, send its whole load once, untimed, so "
                              "the server has met every batch shape first (for accelerators that compile or capture "
                              "per shape on first use; on CPU it made no measurable difference)")
    ignore_eos: bool = Field(True, description="ask for exactly output_len tokens (vLLM/SGLang extension)")
    reset_prefix_cache: bool = Field(True, description="before each point, reset the server's prefix cache "
                                     "where it offers it (vLLM /reset_prefix_cache, SGLang /flush_cache)")
    telemetry_interval_s: float | None = Field(0.5, gt=0, description="sample the server's CPU, memory (and "
                                               "device power / memory / utilisation) this often during each "
                                               "point; null: off")
    capacity: PerfCapacityConfig = Field(default_factory=PerfCapacityConfig)
    loadgen: PerfLoadgenConfig = Field(default_factory=PerfLoadgenConfig)
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


class PerfReducedConfig(Strict):
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
    serving_repeats: int | None = Field(2, gt=0, description="repeats of every serving point (2 still measures "
                                                            "the noise)")
    graph: bool | None = Field(False, description="skip the graph-vs-eager comparison when reduced")


class PerformanceConfig(Strict):
    enabled: bool = True
    latency: PerfLatencyConfig = Field(default_factory=PerfLatencyConfig)
    throughput: PerfThroughputConfig = Field(default_factory=PerfThroughputConfig)
    split: PerfSplitConfig = Field(default_factory=PerfSplitConfig)
    graph: PerfGraphConfig = Field(default_factory=PerfGraphConfig)
    serving: PerfServingConfig = Field(default_factory=PerfServingConfig)
    reduced: PerfReducedConfig = Field(default_factory=PerfReducedConfig)
    seed: int = Field(0, description="seed of the random token prompts")
