"""The `metrics` of `records/environment.json`.

Filled by the environment notebook (notebooks/00_environment.py) from `sections/environment/probe.py`
and `device.py`: params_advisories (`params_advisories_step`), system (`for_record(probe())`),
target_device (`Device.info()`), bandwidth (`measure_bandwidth`), matmul (`measure_matmul`),
roofline (`roofline_inputs`); `steps` from context.SectionRun. The notebook adds system,
target_device, bandwidth and matmul whatever their step did, so each may be null (the step failed
or was skipped) as well as absent (a checkpoint before it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from ascendeval.schema import MetricsModel, SectionMetrics

DeviceKind = Literal["cpu", "cuda", "npu"]

_PROBE = "the environment probe: facts about the host, not metrics (the catalog test skips `system` too)"


class _Probe(MetricsModel):
    catalog_exempt: ClassVar[str | None] = _PROBE


class OsInfo(_Probe):
    system: str
    distribution: str | None  # PRETTY_NAME of /etc/os-release
    kernel: str
    machine: str
    libc: str | None


class CpuInfo(_Probe):
    model: str | None
    physical_cores: int | None
    logical_cpus: int | None
    usable_cpus: int | None  # the affinity mask
    flags: dict[str, bool]  # probe.CPU_FLAGS -> present (empty where /proc/cpuinfo is unreadable)
    flags_present: list[str]


class MemoryInfo(_Probe):
    total_bytes: int
    available_bytes: int
    cgroup_limit_bytes: int | None


class PythonInfo(_Probe):
    version: str
    implementation: str
    executable: str


class CannInfo(_Probe):
    """The CANN toolkit from its version files (`cann_info`)."""

    present: bool
    version: str | None
    reason: str | None = None  # absent: where it looked
    inner_version: str | None = None
    arch: str | None = None
    home: str | None = None
    resolved_home: str | None = None
    source: str | None = None  # the file the version came from


class NpuDriverInfo(_Probe):
    present: bool
    version: str | None
    reason: str | None
    inner_version: str | None = None
    source: str | None = None


class NpuChip(_Probe):
    """`device.parse_npu_smi_info`: one chip of `npu-smi info`; None where the tool prints '-'."""

    npu_id: int
    name: str | None
    health: str
    power_w: float | None
    temp_c: float | None
    hugepages_used_pages: int | None
    hugepages_total_pages: int | None
    chip_id: int | None
    phy_id: int | None
    device_id: int | None
    bus_id: str | None
    aicore_pct: float | None
    memory_used_mb: int | None
    memory_total_mb: int | None
    hbm_used_mb: int | None
    hbm_total_mb: int | None


class NpuProcess(_Probe):
    """`device.parse_npu_smi_processes`: one row of the process table."""

    npu_id: int
    chip_id: int
    pid: int
    process_name: str | None
    memory_mb: float | None


class NpuSmi(_Probe):
    present: bool
    reason: str | None
    npu_smi_version: str | None = None  # present only
    driver_version: str | None = None
    chips: list[NpuChip]
    processes: list[NpuProcess]


class NvidiaSmi(_Probe):
    present: bool
    reason: str | None
    # Open: `device.parse_nvidia_smi_csv` names each key after the tool's CSV header
    # ('memory.total [MiB]' -> memory_total_mib), so the keys are the query's, not ours.
    gpus: list[dict[str, Any]]


class CudaDevice(_Probe):
    index: int
    name: str
    total_memory_bytes: int
    compute_capability: str


class NpuDevice(_Probe):
    index: int
    name: str
    total_memory_bytes: int


class TorchInfo(_Probe):
    """What torch sees (`torch_info`); only `present` when torch does not import."""

    present: bool
    version: str | None = None
    cuda_build: str | None = None
    num_threads: int | None = None
    cpu_capability: str | None = None
    cuda_available: bool | None = None
    cuda_devices: list[CudaDevice] | None = None
    npu_available: bool | None = None
    npu_devices: list[NpuDevice] | None = None


class VllmSeam(_Probe):
    """`vllm_contract.verdict`: the installed vLLM against the seam's contract."""

    vllm_version: str | None
    verdict: str
    optional_absent: list[str]
    required_missing: list[str]


class System(_Probe):
    """`probe()` without npu-smi's raw text (`for_record`)."""

    os: OsInfo
    cpu: CpuInfo
    memory: MemoryInfo
    python: PythonInfo
    # Open: package key -> version (None: not installed); the key set is probe.PACKAGES +
    # EXTRA_PACKAGES and grows with them.
    packages: dict[str, str | None]
    ascendeval_git: str | None
    cann: CannInfo
    npu_driver: NpuDriverInfo
    npu_smi: NpuSmi
    nvidia_smi: NvidiaSmi
    torch: TorchInfo
    # Open: the variables that select accelerators (device.visible_device_env) -> value
    visible_devices_env: dict[str, str | None]
    vllm_seam: VllmSeam
    # Open: component -> why it is absent; components are named by the probe parts above.
    absent: dict[str, str]


class TargetDevice(MetricsModel):
    """`Device.info()`: the run's target device through the device seam."""

    kind: DeviceKind
    index: int
    name: str
    count: int
    total_memory_bytes: int | None
    memory_allocated_bytes: int  # cuda/npu allocator; on CPU the process RSS


class Bandwidth(MetricsModel):
    """`device.measure_bandwidth` + how the buffer was sized."""

    device: DeviceKind
    device_name: str
    buffer_mib: int
    repeats: int
    copy_bandwidth_gbps: float
    read_bandwidth_gbps: float
    copy_median_ms: float
    read_median_ms: float
    copy_samples_ms: list[float]
    read_samples_ms: list[float]
    wall_s: float
    sized_by: str  # "params" or "defaults for <kind>"


class MatmulShape(MetricsModel):
    size: int
    dtype: str
    median_ms: float | None  # None: skipped (see skipped)
    tflops: float | None
    skipped: str | None  # why: the predicted time did not fit the budget


class Matmul(MetricsModel):
    """`device.measure_matmul` + how the shapes were sized. The best figure per dtype probed is
    flat (matmul_<fp32|bf16|fp16>_tflops and its size); a dtype not in the params is absent."""

    device: DeviceKind
    device_name: str
    repeats: int
    budget_s: float | None
    threads: int | None  # CPU only
    shapes: list[MatmulShape]
    matmul_fp32_tflops: float | None = None
    matmul_fp32_best_size: int | None = None
    matmul_bf16_tflops: float | None = None
    matmul_bf16_best_size: int | None = None
    matmul_fp16_tflops: float | None = None
    matmul_fp16_best_size: int | None = None
    wall_s: float
    sized_by: str


class RooflineInputs(MetricsModel):
    """`roofline_inputs`: the flat headline figures later sections divide by (None: not measured),
    with the vendor's datasheet figures beside them for context (accelerators only)."""

    device: DeviceKind | None
    device_name: str | None
    copy_bandwidth_gbps: float | None
    read_bandwidth_gbps: float | None
    matmul_fp32_tflops: float | None
    matmul_fp32_best_size: int | None
    matmul_bf16_tflops: float | None
    matmul_bf16_best_size: int | None
    matmul_fp16_tflops: float | None
    matmul_fp16_best_size: int | None
    datasheet_bf16_tflops: float | None
    datasheet_memory_bandwidth_gbps: float | None
    datasheet_source: str | None


class Deployment(MetricsModel):
    """A running deployment's own description (`probe.deployment_info`)."""

    url: str
    server_kind: str  # the params' server.kind: vllm, sglang, external
    version: str | None  # GET /version (vLLM); None: the server has no such route
    served_models: list[str]
    model: str | None  # the one the run measures
    max_model_len: int | None  # from /v1/models (vLLM reports it); None: not reported
    metrics_endpoint: bool  # serves Prometheus counters at /metrics
    remote: bool  # on another host: this host's device probes do not describe it


class EnvironmentMetrics(SectionMetrics):
    params_advisories: list[str] | None = None  # settings in the params that do nothing on the target
    system: System | None = None
    deployment: Deployment | None = None  # target.engine openai with server.url
    target_device: TargetDevice | None = None
    bandwidth: Bandwidth | None = None
    matmul: Matmul | None = None
    roofline: RooflineInputs | None = None
