"""The `metrics` of `records/performance.json`.

Filled by the performance steps (`sections/performance/*.py`): `plan` -> plan, `open_engine` ->
engine, `latency` -> latency + e2e_latency, `throughput` -> throughput + throughput_bare +
throughput_harness_vs_bare_x, `prefill_decode` -> prefill_decode, `memory` -> memory,
`graph_vs_eager` -> graph_vs_eager, `roofline` -> roofline, `serving` -> serving (after every load
point) + serving_main + serving_agreement; the serving statistics come from `metrics.serving_metrics` and
`loadgen.LoadRun.metrics`. `engine_starts` and `steps` come from context.SectionRun. Offline blocks
are absent on a served-only target (`target.engine: openai`), serving blocks on an hf target.
"""

from __future__ import annotations

from typing import Any, Literal

from ascendeval.schema import (
    EngineInfo,
    EngineStart,
    GuardResult,
    MetricsModel,
    SectionMetrics,
)


class PlanModel(MetricsModel):
    """`model_facts`: shapes and sizes from config.json and the safetensors headers (no load), under
    the keys of `models.model_card_facts`, plus what the run's dtype makes of them."""

    num_layers: int | None
    hidden_size: int | None
    num_key_value_heads: int | None
    head_dim: int | None
    vocab_size: int | None
    config_dtype: str | None
    param_count: int | None  # None: no safetensors checkpoint
    weight_bytes: int | None  # bytes of the stored tensors
    run_dtype: str
    weights_bytes: int | None  # parameters x bytes of the run dtype
    kv_bytes_per_token: int | None


class Plan(MetricsModel):
    reduced: bool  # the `reduced` counts applied (a model above reduced.above_params)
    # Open here: the resolved PerformanceConfig (`conf.model_dump`), echoed as the counts that ran.
    # Its schema is the section's config class; declaring it twice would let the two drift.
    effective: dict[str, Any]
    model: PlanModel


class Latency(MetricsModel):
    """`vllm bench latency`: `metrics.latency_summary` over the timed iterations, plus the shape."""

    iters_count: int
    avg_latency_s: float
    std_latency_s: float
    min_latency_s: float
    max_latency_s: float
    # metrics.LATENCY_PERCENTILES
    p10_latency_s: float
    p25_latency_s: float
    p50_latency_s: float
    p75_latency_s: float
    p90_latency_s: float
    p99_latency_s: float
    input_len: int
    output_len: int
    batch_size: int
    warmup_iters: int
    prompt_tok_per_s: float
    generation_tok_per_s: float


class E2ELatency(MetricsModel):
    """One request of `output_len` tokens (batch 1), mean over `iters_count`."""

    output_len: int
    mean_latency_s: float
    output_tok_per_s: float
    mean_ttft_ms: float | None  # None: the engine gives no first-token time
    iters_count: int


class Throughput(MetricsModel):
    """`metrics.throughput_summary` of one timed batch (median of the repeats)."""

    elapsed_s: float
    num_requests: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput_req_per_s: float
    total_tok_per_s: float
    output_tok_per_s: float


class PrefillDecode(MetricsModel):
    """One batch size of the prefill / decode split."""

    batch_size: int
    prefill_input_len: int
    prefill_s: float
    prefill_tok_per_s: float
    decode_output_len: int
    # None: the long run was not slower than the 1-token run (no decode time to divide by)
    decode_s: float | None
    decode_tok_per_s: float | None
    decode_ms_per_step: float | None


class Memory(MetricsModel):
    weights_bytes: int | None
    weight_bytes: int | None  # stored tensors (schema 1: checkpoint_bytes, the files' size)
    kv_bytes_per_token: int | None
    kv_cache_tokens: int | None  # None: an hf engine (no paged KV cache)
    kv_cache_blocks_count: int | None
    kv_cache_max_concurrency: float | None
    max_model_len_tokens: int | None
    # device.process_tree_memory: this process and its children (vLLM's engine core)
    rss_bytes: int
    peak_rss_bytes: int
    # npu / cuda targets only: device.engine_device_memory, read from the device tool's process table
    engine_device_memory_bytes: int | None = None
    device_used_bytes: int | None = None
    device_total_bytes: int | None = None
    device_memory_source: str | None = None
    device_memory_reason: str | None = None


class GraphMode(MetricsModel):
    """The latency and throughput workloads in one graph mode."""

    mode: str  # eager | ACL graph | CUDA graph | torch.compile | graph
    enforce_eager: bool
    compilation_mode: str | None  # as the engine resolved it
    cudagraph_mode: str | None
    startup_s: float
    avg_latency_s: float
    p50_latency_s: float
    output_tok_per_s: float
    request_throughput_req_per_s: float
    mean_ttft_ms: float | None


class GraphDelta(MetricsModel):
    """(graph - eager) / eager per figure (`metrics.relative_delta`); None where undefined."""

    startup_s_delta: float | None
    avg_latency_s_delta: float | None
    p50_latency_s_delta: float | None
    output_tok_per_s_delta: float | None
    request_throughput_req_per_s_delta: float | None
    mean_ttft_ms_delta: float | None


class GraphVsEager(MetricsModel):
    eager: GraphMode
    graph: GraphMode
    graph_vs_eager_delta: GraphDelta


class Roofline(MetricsModel):
    """Decode bandwidth and prefill FLOPs utilisation at the largest split batch, against the
    environment record's probes. The decode half is present when a bandwidth was measured and
    decode had a speed, the prefill half when a matmul throughput was measured."""

    batch_size: int
    measured_bandwidth_gbps: float | None
    bandwidth_key: str | None  # read_bandwidth_gbps, else copy_bandwidth_gbps
    measured_matmul_tflops: float | None
    matmul_dtype_key: str  # matmul_<dtype>_tflops used as the roof
    decode_bytes_per_step: float | None = None
    decode_achieved_gbps: float | None = None
    decode_bandwidth_utilization: float | None = None  # None (with the note): above the roof, not a utilisation
    decode_bandwidth_note: str | None = None
    prefill_flops: float | None = None
    prefill_achieved_tflops_per_s: float | None = None
    prefill_flops_utilization: float | None = None  # None (with the note): above the probe
    prefill_flops_note: str | None = None


class Telemetry(MetricsModel):
    """The server's processes (and device) sampled during a load point (telemetry.summarise);
    None where not read. The device rows say why they were not exercised (a CPU run has none)."""

    telemetry_samples: int
    telemetry_interval_s: float | None
    host_cpu_percent_mean: float | None
    host_cpu_percent_max: float | None
    server_cpu_percent_mean: float | None
    server_cpu_percent_max: float | None
    server_rss_bytes_mean: float | None
    server_rss_bytes_max: float | None
    server_num_procs_max: int | None
    device_power_w_mean: float | None
    device_power_w_max: float | None
    device_mem_used_bytes_mean: float | None
    device_mem_used_bytes_max: float | None
    device_util_percent_mean: float | None
    device_util_percent_max: float | None
    device_energy_j: float | None
    device_energy_window_s: float | None
    device_joules_per_output_token: float | None
    device_not_exercised: str | None
    device_not_exercised_zh: str | None
    joules_per_token_not_computed: str | None
    joules_per_token_not_computed_zh: str | None


class ServingRepeat(MetricsModel):
    """One repeat of a load point: the figures `serving.REPEAT_FIGURES` of its own requests."""

    repeat: int  # 0-based round
    duration_s: float
    completed_count: int
    output_tok_per_s: float | None
    median_ttft_ms: float | None
    median_tpot_ms: float | None
    p99_tpot_ms: float | None
    settle_wait_s: float | None
    host_cpu_busy_before: float | None
    # clean points (points.py); None in records written before they existed
    prefix_cache_reset: bool | None = None  # True: reset before the point; False: refused; None: not offered
    prefix_cache_reset_note: str | None = None
    input_len_requested: int | None = None
    input_len_mismatch_count: int | None = None  # chat prompts whose text did not re-tokenize to the length
    input_tokens_actual_min: int | None = None  # prompt tokens the server counted (usage)
    input_tokens_actual_max: int | None = None
    telemetry: Telemetry | None = None  # the server's CPU / memory / device while the repeat ran


class ServingIntervals(MetricsModel):
    """95 % intervals of a point's figures (serving.point_intervals, uncertainty.py)."""

    level: float
    repeats: int
    method: str
    # figure -> [low, high], None where it could not be computed (too few values, one repeat)
    intervals: dict[str, list[float] | None]


class ServingIndistinguishable(MetricsModel):
    """Neighbouring points of a sweep whose intervals overlap on a figure (serving.indistinguishable)."""

    sweep: Literal["rate", "concurrency"]
    first_point: str
    second_point: str
    compared_metric: str
    first_value: float | None
    second_value: float | None
    first_interval: list[float]
    second_interval: list[float]


class SloBaseline(MetricsModel):
    """The single-request baseline the default SLOs are multiples of (slo_capacity.single_request_baseline)."""

    num_requests: int
    completed_count: int
    median_ttft_ms: float | None
    median_tpot_ms: float | None
    median_e2el_ms: float | None
    request_throughput_req_per_s: float


class ServingSlo(MetricsModel):
    """The SLOs every serving figure's goodput is measured against: the params' or derived."""

    ttft_ms: float | None
    tpot_ms: float | None
    e2el_ms: float | None
    source: Literal["params", "baseline"]
    single_request_baseline: SloBaseline | None
    factors: dict[str, float | None] | None = None  # <key>_x_baseline used to derive them


class CapacityProbe(MetricsModel):
    """One load point of the capacity search."""

    search: Literal["rate", "concurrency"]
    x: float  # the rate (req/s) or concurrency probed
    request_rate_req_per_s: float | None
    max_concurrency: int | None
    num_requests: int
    completed_count: int
    good_count: int | None
    share_met: float
    met: bool
    goodput_req_per_s: float | None
    request_throughput_req_per_s: float
    output_tok_per_s: float | None
    p99_ttft_ms: float | None
    p99_tpot_ms: float | None
    p99_e2el_ms: float | None
    mean_e2el_ms: float | None = None  # with the throughput, the concurrency search's start (Little's law)
    duration_s: float
    prefix_cache_reset: bool | None
    client_bound: bool | None = None  # the client itself was the bottleneck (loadgen.client_stats)


class CapacityAnswer(MetricsModel):
    """Where one search ended (slo_capacity.search)."""

    highest_passing: float | None  # None: not met even at the lowest load probed
    lowest_failing: float | None  # None: no probe missed the target (the budget ran out first)
    stop_reason: str
    start: float


class ClientFigures(MetricsModel):
    """The load client's own figures for one load point (loadgen.client_stats): how late its event
    loop woke and its requests left, and whether it was the point's bottleneck."""

    transport: Literal["fast", "aiohttp"]
    send_timer: Literal["timerfd", "asyncio"]
    loop_lag_samples: int
    loop_lag_p50_ms: float | None
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    send_lateness_p50_ms: float | None
    send_lateness_p99_ms: float | None
    send_lateness_max_ms: float | None
    send_backlog_max: int
    loop_lag_limit_ms: float
    send_lateness_limit_ms: float
    loop_busy_share: float | None  # the loop thread's CPU time / wall time
    involuntary_switches: int | None
    client_bound: bool
    client_bound_reason: str | None
    client_bound_reason_zh: str | None


class LoadgenCalibration(MetricsModel):
    """The client against the simulated server at one planned rate (loadgen.calibrate,
    client_check.calibration): its own share of TTFT, per request matched to the server's record."""

    request_rate_req_per_s: float | None  # None: rate inf
    request_rate_label: str
    num_requests: int
    input_len: int
    output_len: int
    completed_count: int
    failed_count: int
    duration_s: float
    matched_count: int
    client_overhead_median_ms: float | None
    client_overhead_p90_ms: float | None
    client_overhead_p99_ms: float | None
    client_overhead_max_ms: float | None
    client_send_median_ms: float | None
    client_send_p90_ms: float | None
    client_send_p99_ms: float | None
    client_receive_median_ms: float | None
    client_receive_p90_ms: float | None
    client_receive_p99_ms: float | None
    median_ttft_ms: float | None
    server_median_ttft_ms: float | None
    median_tpot_ms: float | None
    server_median_tpot_ms: float | None
    ttft_error_ms: float | None
    ttft_error_pct: float | None
    tpot_error_ms: float | None
    tpot_error_pct: float | None
    ttft_vs_nominal_ms: float | None
    ttft_vs_nominal_pct: float | None
    tpot_vs_nominal_ms: float | None
    tpot_vs_nominal_pct: float | None
    client: ClientFigures
    seconds: float
    sim_ttft_ms: float
    sim_tpot_ms: float


class CapacitySlo(MetricsModel):
    """Capacity under an SLO (slo_capacity.capacity)."""

    slo: dict[str, float | None]
    slo_source: Literal["params", "baseline"]
    target_share: float
    request_budget: int
    probe_requests: int
    probes: list[CapacityProbe]
    requests_used: int
    rate: CapacityAnswer | None = None
    concurrency: CapacityAnswer | None = None
    wall_s: float | None = None


class ToolFigures(MetricsModel):
    """One benchmark tool's TTFT / TPOT / ITL / E2EL of the main point's rows (metric_definitions.py);
    None where the tool does not define the figure."""

    tool: str
    itl_basis: str
    mean_ttft_ms: float | None
    median_ttft_ms: float | None
    p99_ttft_ms: float | None
    mean_tpot_ms: float | None
    median_tpot_ms: float | None
    p99_tpot_ms: float | None
    mean_itl_ms: float | None
    median_itl_ms: float | None
    p99_itl_ms: float | None
    mean_e2el_ms: float | None
    median_e2el_ms: float | None
    p99_e2el_ms: float | None


class DefinitionFinding(MetricsModel):
    """Where two tools' definitions give different numbers on this trace (metric_definitions.disagreements)."""

    finding: str
    figure: str
    tools: list[str]
    figures_by_tool: dict[str, float | None]
    relative_difference: float | None
    differs: bool | None
    message: str
    message_zh: str


class ServingDefinitions(MetricsModel):
    point: str
    tools: list[ToolFigures]
    findings: list[DefinitionFinding]


class ServingAgreement(MetricsModel):
    """A sweep point with the main point's settings, compared with it (`serving.same_settings_agreement`)."""

    compared_metric: str  # a key of ServingPoint
    first_point: str
    second_point: str
    first_value: float
    second_value: float
    difference: float
    repeat_spread: float | None  # widest spread of the figure over either point's repeats; None: 1 repeat
    within_noise: bool | None  # difference <= repeat_spread; None: no noise measured


class ServingPoint(MetricsModel):
    """One load point of the serving benchmark: `metrics.serving_metrics` (vLLM's definitions;
    None = not measured, e.g. no usage reported) + the load spec from `loadgen.LoadRun.metrics`."""

    num_requests: int
    completed_count: int
    failed_count: int
    failed_rate: float | None
    usage_missing_count: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int | None  # None: some response carried no usage
    request_throughput_req_per_s: float
    output_tok_per_s: float | None
    total_tok_per_s: float | None
    # metrics.summarize over each quantity, percentiles metrics.DEFAULT_PERCENTILES
    mean_ttft_ms: float | None
    median_ttft_ms: float | None
    std_ttft_ms: float | None
    min_ttft_ms: float | None
    max_ttft_ms: float | None
    p50_ttft_ms: float | None
    p90_ttft_ms: float | None
    p95_ttft_ms: float | None
    p99_ttft_ms: float | None
    mean_tpot_ms: float | None
    median_tpot_ms: float | None
    std_tpot_ms: float | None
    min_tpot_ms: float | None
    max_tpot_ms: float | None
    p50_tpot_ms: float | None
    p90_tpot_ms: float | None
    p95_tpot_ms: float | None
    p99_tpot_ms: float | None
    mean_itl_ms: float | None
    median_itl_ms: float | None
    std_itl_ms: float | None
    min_itl_ms: float | None
    max_itl_ms: float | None
    p50_itl_ms: float | None
    p90_itl_ms: float | None
    p95_itl_ms: float | None
    p99_itl_ms: float | None
    # per token (chunk gaps split over the tokens of each chunk); None unless the server says
    # how many tokens each chunk carried
    mean_token_itl_ms: float | None
    median_token_itl_ms: float | None
    std_token_itl_ms: float | None
    min_token_itl_ms: float | None
    max_token_itl_ms: float | None
    p50_token_itl_ms: float | None
    p90_token_itl_ms: float | None
    p95_token_itl_ms: float | None
    p99_token_itl_ms: float | None
    mean_e2el_ms: float | None
    median_e2el_ms: float | None
    std_e2el_ms: float | None
    min_e2el_ms: float | None
    max_e2el_ms: float | None
    p50_e2el_ms: float | None
    p90_e2el_ms: float | None
    p95_e2el_ms: float | None
    p99_e2el_ms: float | None
    peak_output_tok_per_s: float | None
    peak_concurrent_requests_count: int | None
    goodput_req_per_s: float | None  # None: no SLO set
    good_count: int | None
    request_rate_req_per_s: float | None  # None: rate inf (all requests at once)
    request_rate_label: str
    burstiness: float
    max_concurrency: int | None
    warmup_count: int
    settle_wait_s: float | None  # waited for a quiet host before the point; None: no wait asked
    host_cpu_busy_before: float | None  # busy share of the host's CPUs just before the point
    sweep: Literal["main", "rate", "concurrency"]
    # the repeats pooled in the figures above (settle_wait_s summed, host_cpu_busy_before the highest);
    # None in records written before repeats existed
    repeat_figures: list[ServingRepeat] | None = None
    # clean points over the repeats (serving._pooled_point); None in older records
    prefix_cache_reset: bool | None = None
    prefix_cache_reset_note: str | None = None
    input_len_requested: int | None = None
    input_tokens_actual_min: int | None = None
    input_tokens_actual_max: int | None = None
    ci: ServingIntervals | None = None
    telemetry: Telemetry | None = None
    client: ClientFigures | None = None  # None in older records


class ServingSweepPoint(ServingPoint):
    """A point as stored in `serving`: with the failed requests' errors (serving_main drops them)."""

    # Open: first line of each error message -> count; the keys are data (catalog kind data_map).
    errors: dict[str, int]


class PerformanceMetrics(SectionMetrics):
    plan: Plan | None = None
    engine_starts: list[EngineStart] | None = None
    engine: EngineInfo | None = None
    latency: Latency | None = None
    e2e_latency: list[E2ELatency] | None = None
    throughput: Throughput | None = None
    throughput_bare: Throughput | None = None  # None: the engine has no bare LLM.generate (hf)
    throughput_harness_vs_bare_x: float | None = None
    prefill_decode: list[PrefillDecode] | None = None
    memory: Memory | None = None
    graph_vs_eager: GraphVsEager | None = None
    roofline: Roofline | None = None
    serving: list[ServingSweepPoint] | None = None  # main point first, then the rate and concurrency sweeps
    serving_main: ServingPoint | None = None
    serving_agreement: list[ServingAgreement] | None = None  # None: no sweep point repeats the main settings
    serving_indistinguishable: list[ServingIndistinguishable] | None = None
    serving_slo: ServingSlo | None = None
    serving_definitions: ServingDefinitions | None = None
    capacity_slo: CapacitySlo | None = None
    loadgen_calibration: list[LoadgenCalibration] | None = None
    # the output guard (output_guard.py): per figure, whether the outputs it timed were sane
    output_guard: dict[str, GuardResult] | None = None
