"""Telemetry under load: the server's CPU and memory, the host's CPU and the accelerators' power,
memory and utilisation, sampled on a background thread while a load point runs.

    with Sampler(server_pid, "npu") as s:      # or s = Sampler(...).start(); ...; s.stop()
        run_load_point(...)
    summary = summarise(s.samples, output_tokens, t0=point_start_s, t1=point_end_s)

Clock: every sample's `t_s` is `time.perf_counter()`, the clock the load generator stamps its
requests with (`start_s`), so a load point's window [t0, t1] selects its samples directly.

What one sample holds (None = not read; never a made-up 0):
- t_s: when the tick started (perf_counter seconds).
- host_cpu_percent: busy share of ALL host CPUs over the interval since the previous tick, 0-100
  (psutil's definition: busy = total - idle - iowait, from /proc/stat deltas).
- server_cpu_percent: CPU time of the server's process tree over the same interval, in percent
  of ONE core, summed over the processes (a server keeping 4 cores busy reads ~400).
- server_rss_bytes: RSS summed over the tree (pages shared between processes count once per
  process, as `device.process_tree_memory` does); server_num_procs: processes in the tree.
- device_power_w: summed over the chips that report power. npu-smi prints an Atlas A3 NPU's
  power on its chip 0 and '-' on chip 1, so there the sum is per NPU, as the tool reports it.
- device_mem_used_bytes: summed over chips (npu-smi HBM MB, or its Memory column on 310 chips
  without HBM; nvidia-smi memory.used MiB; both are MiB, see device.MIB).
- device_util_percent: mean over the chips that report it (npu AI Core %, nvidia utilization.gpu %).
- device_t_s: midpoint of the device tool's call (npu-smi can take a good part of a second, so
  power is integrated at the time it was read, not at the tick start); device_read_s: its duration.
- device_chips: per chip [{id, power_w, mem_used_bytes, util_percent}] (id: NPU id / GPU index;
  an A3 NPU lists two chips with the same id).
`device_ids` restricts the device fields to the NPUs / GPUs the server runs on (others may be
serving another workload, and their power is not this server's energy).

CPU accounting: counters are primed in start(), so the first sample already covers one real
interval. A process that appears between two ticks is counted from its creation (its whole CPU
time falls in the interval); one that exits between two ticks loses its CPU since the previous
tick (it can no longer be read). The tree is walked each tick; one psutil.Process is kept per pid.

Device tool: `tool(args) -> (stdout | None, why_not)`, the project's seam (device._default_tool
runs the real npu-smi / nvidia-smi). A tool that is missing or fails, or whose output has no chip
the parser recognises, is recorded once as "not exercised: <why>" and never called again in
this sampler; CPU sampling goes on.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

from .device import MIB, parse_npu_smi_info, parse_nvidia_smi_csv

Tool = Callable[[list[str]], "tuple[str | None, str | None]"]
NVIDIA_SMI_TELEMETRY_QUERY = "index,power.draw,memory.used,utilization.gpu"
NVIDIA_SMI_ARGS = ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_TELEMETRY_QUERY}", "--format=csv"]
NPU_SMI_ARGS = ["npu-smi", "info"]
SERIES = ("host_cpu_percent", "server_cpu_percent", "server_rss_bytes", "device_power_w",
          "device_mem_used_bytes", "device_util_percent")
CPU_ONLY_REASON = ("not exercised: a CPU run has no accelerator power, memory or utilisation to read",
                   "未测量：CPU 运行没有可读取的加速器功耗、显存或利用率")


def _npu_chips(text: str) -> list[dict[str, Any]]:
    out = []
    for c in parse_npu_smi_info(text):
        mem = c.get("hbm_used_mb") if c.get("hbm_used_mb") is not None else c.get("memory_used_mb")
        out.append({"id": c.get("npu_id"), "power_w": c.get("power_w"),
                    "mem_used_bytes": int(mem * MIB) if isinstance(mem, (int, float)) else None,
                    "util_percent": c.get("aicore_pct")})
    return out


def _nvidia_chips(text: str) -> list[dict[str, Any]]:
    out = []
    for g in parse_nvidia_smi_csv(text):
        mem = g.get("memory_used_mib")
        power, util = g.get("power_draw_w"), g.get("utilization_gpu_pct")
        out.append({"id": g.get("index"), "power_w": power if isinstance(power, (int, float)) else None,
                    "mem_used_bytes": int(mem * MIB) if isinstance(mem, (int, float)) else None,
                    "util_percent": util if isinstance(util, (int, float)) else None})
    return out


def _since_boot(psutil: Any) -> float:
    """Seconds since boot now, on the clock /proc/<pid>/stat's start time uses (CLOCK_BOOTTIME)."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time() - psutil.boot_time()  # other systems: to the boot time's precision


def _cpu_busy_total(t: Any) -> tuple[float, float]:
    """(busy, total) seconds of all CPUs, psutil's own formula for cpu_percent on Linux."""
    total = sum(t)
    # guest time is already counted in user / nice on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    busy = total - t.idle - getattr(t, "iowait", 0.0)
    return busy, total


class Sampler:
    """Samples host / server-tree / device telemetry every `interval_s` on one daemon thread.

    Args:
        root_pid: the server's root process (its children are included); None: no server fields.
        device_kind: "cpu", "cuda" or "npu".
        interval_s: sampling period (ticks are scheduled on absolute deadlines; a tick that runs
            late, e.g. behind a slow npu-smi, is not followed by a burst of catch-up ticks).
        tool: the device-tool runner (args -> (stdout | None, why_not)); default device._default_tool.
        device_ids: NPU ids / GPU indexes to keep; None keeps every chip the tool lists.
        clock: the timestamp source (time.perf_counter; tests may pass a stand-in).
    """

    def __init__(self, root_pid: int | None, device_kind: str = "cpu", interval_s: float = 0.5,
                 tool: Tool | None = None, device_ids: Iterable[int] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        if device_kind not in ("cpu", "cuda", "npu"):
            raise ValueError(f"unknown device kind {device_kind!r}; allowed: cpu, cuda, npu")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive (got {interval_s})")
        import psutil

        self._psutil = psutil
        self.root_pid = root_pid
        self.device_kind = device_kind
        self.interval_s = float(interval_s)
        self.device_ids = None if device_ids is None else set(device_ids)
        self._clock = clock
        if tool is None:
            from .device import _default_tool

            tool = _default_tool
        self._tool = tool
        self.tool_calls = 0
        self.device_source = {"npu": "npu-smi info", "cuda": " ".join(NVIDIA_SMI_ARGS)}.get(device_kind)
        self.device_not_exercised: str | None = CPU_ONLY_REASON[0] if device_kind == "cpu" else None
        self._device_ok = device_kind != "cpu"
        self._samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process, kept while the pid is in the tree
        self._last_cpu: dict[int, float] = {}  # pid -> user + system seconds at the previous tick
        self._last_host: tuple[float, float] | None = None
        self._last_tick_boot: float | None = None  # seconds since boot at the previous tick
        self._last_tick_t: float | None = None
        self.errors: list[str] = []  # unexpected errors in the sampling thread (kept, never raised there)

    # ------------------------------------------------------------------ lifecycle

    @property
    def samples(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._samples)

    def start(self) -> Sampler:
        """Prime the CPU counters, then start the thread; the first sample lands one interval later."""
        if self._thread is not None:
            raise RuntimeError("Sampler already started")
        self.prime()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ascendeval-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Stop the thread (waits for a tick in progress, at most `timeout_s`) and return the samples."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.errors.append(f"sampling thread still busy {timeout_s:g} s after stop (a hung device tool?)")
        return self.samples

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def summarise(self, output_tokens: int | None, t0: float | None = None, t1: float | None = None) -> dict[str, Any]:
        """`summarise` over this sampler's samples, with its device reason where nothing was read."""
        return summarise(self.samples, output_tokens, t0, t1, not_exercised=self.device_not_exercised)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        deadline = self._clock() + self.interval_s
        while not self._stop.wait(max(0.0, deadline - self._clock())):
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - a sampling bug must not kill the load point
                if len(self.errors) < 20:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            deadline += self.interval_s
            now = self._clock()
            if deadline < now:  # the tick overran: next one a full interval from now, no burst
                deadline = now + self.interval_s

    # ------------------------------------------------------------------ one tick

    def prime(self) -> None:
        """Read the CPU counters once so the next sample covers a real interval (no fake first 0)."""
        self._last_host = _cpu_busy_total(self._psutil.cpu_times())
        self._last_tick_boot = _since_boot(self._psutil)
        self._last_tick_t = self._clock()
        self._read_tree(None)

    def sample_once(self) -> dict[str, Any]:
        """Take one sample now and append it (the thread calls this every interval). Called without
        start() / prime(), the first call primes, and its CPU fields are None (no interval yet)."""
        primed_now = self._last_host is None
        if primed_now:
            self.prime()
        t_s = self._clock()
        boot_s = _since_boot(self._psutil)
        host = _cpu_busy_total(self._psutil.cpu_times())
        host_pct = None
        if not primed_now and self._last_host is not None and host[1] > self._last_host[1]:
            host_pct = 100.0 * max(0.0, host[0] - self._last_host[0]) / (host[1] - self._last_host[1])
        self._last_host = host
        dt = None if primed_now or self._last_tick_t is None else t_s - self._last_tick_t
        sample: dict[str, Any] = {"t_s": t_s, "host_cpu_percent": host_pct}
        sample.update(self._read_tree(dt))
        self._last_tick_t, self._last_tick_boot = t_s, boot_s
        sample.update(self._read_device())
        with self._lock:
            self._samples.append(sample)
        return sample

    def _read_tree(self, dt: float | None) -> dict[str, Any]:
        """Server fields from the process tree; `dt` None primes (no percentage)."""
        psutil = self._psutil
        none = {"server_cpu_percent": None, "server_rss_bytes": None, "server_num_procs": None}
        if self.root_pid is None:
            return none
        root = self._procs.get(self.root_pid)
        try:
            if root is None or not root.is_running():
                root = psutil.Process(self.root_pid)
            pids = [self.root_pid] + [c.pid for c in root.children(recursive=True)]
        except psutil.Error:
            self._procs.clear()
            self._last_cpu.clear()
            return {**none, "server_num_procs": 0}
        cpu_delta = 0.0
        rss = 0
        seen: dict[int, Any] = {}
        for pid in pids:
            proc = self._procs.get(pid) if pid != self.root_pid else root
            try:
                if proc is None or not proc.is_running():  # new pid, or a reused one
                    proc = psutil.Process(pid)
                    self._last_cpu.pop(pid, None)
                with proc.oneshot():
                    ct = proc.cpu_times()
                    mem = proc.memory_info().rss
                    # psutil's create_time is start ticks since boot + the boot time: take the boot time off
                    created = proc.create_time() - psutil.boot_time() if pid not in self._last_cpu else None
            except psutil.Error:
                continue  # exited between the walk and the read
            used = ct.user + ct.system
            if pid in self._last_cpu:
                cpu_delta += max(0.0, used - self._last_cpu[pid])
            elif dt is not None and self._last_tick_boot is not None and created is not None \
                    and created >= self._last_tick_boot:
                cpu_delta += used  # born within this interval: all its CPU time is in it
            # else: first sight of a process that predates the previous tick: primed now, counted next tick
            self._last_cpu[pid] = used
            rss += mem
            seen[pid] = proc
        for pid in set(self._last_cpu) - set(seen):
            del self._last_cpu[pid]
        self._procs = seen
        cpu_pct = 100.0 * cpu_delta / dt if dt and dt > 0 else None
        return {"server_cpu_percent": cpu_pct, "server_rss_bytes": rss if seen else None,
                "server_num_procs": len(seen)}

    def _read_device(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device_power_w": None, "device_mem_used_bytes": None,
                               "device_util_percent": None}
        if not self._device_ok:
            return out
        args = NPU_SMI_ARGS if self.device_kind == "npu" else NVIDIA_SMI_ARGS
        c0 = self._clock()
        self.tool_calls += 1
        try:
            text, why = self._tool(list(args))
        except Exception as exc:  # noqa: BLE001 - a runner that raises is a tool that failed
            text, why = None, f"{' '.join(args)} raised {type(exc).__name__}: {exc}"
        c1 = self._clock()
        if text is None:
            return self._give_up(why or f"{' '.join(args)} gave no output", out)
        chips = _npu_chips(text) if self.device_kind == "npu" else _nvidia_chips(text)
        if not chips:
            return self._give_up(f"{args[0]} printed no chip row the parser recognises", out)
        if self.device_ids is not None:
            chips = [c for c in chips if c["id"] in self.device_ids]
            if not chips:
                return self._give_up(f"{args[0]} lists none of the devices {sorted(self.device_ids)}", out)
        power = [c["power_w"] for c in chips if c["power_w"] is not None]
        mem = [c["mem_used_bytes"] for c in chips if c["mem_used_bytes"] is not None]
        util = [c["util_percent"] for c in chips if c["util_percent"] is not None]
        out.update({
            "device_power_w": float(sum(power)) if power else None,
            "device_mem_used_bytes": int(sum(mem)) if mem else None,
            "device_util_percent": float(statistics.fmean(util)) if util else None,
            "device_t_s": (c0 + c1) / 2,
            "device_read_s": c1 - c0,
            "device_chips": chips,
        })
        return out

    def _give_up(self, why: str, out: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for s in self._samples if s.get("device_chips"))
        self.device_not_exercised = f"not exercised: {why}" + (
            f" (device reads stopped after {done} good read(s))" if done else "")
        self._device_ok = False
        return out


# ---------------------------------------------------------------------------- summary


def _in(t: float, t0: float | None, t1: float | None) -> bool:
    return (t0 is None or t >= t0) and (t1 is None or t <= t1)


def _clipped(points: list[tuple[float, float]], t0: float | None, t1: float | None) -> list[tuple[float, float]]:
    """The (t, value) points inside [t0, t1], plus the values at t0 and t1 linearly interpolated
    from the neighbours on both sides where such neighbours exist (no extrapolation)."""
    pts = sorted(points)
    inside = [p for p in pts if _in(p[0], t0, t1)]
    for edge, is_start in ((t0, True), (t1, False)):
        if edge is None or any(abs(p[0] - edge) < 1e-12 for p in inside):
            continue
        before = [p for p in pts if p[0] < edge]
        after = [p for p in pts if p[0] > edge]
        if before and after:
            (ta, va), (tb, vb) = before[-1], after[0]
            v = va + (vb - va) * (edge - ta) / (tb - ta)
            inside = [(edge, v)] + inside if is_start else inside + [(edge, v)]
    return inside


def trapezoid_energy_j(points: list[tuple[float, float]]) -> float:
    """Integral of power (W) over time (s) by the trapezoid rule -> joules."""
    pts = sorted(points)
    return float(sum((tb - ta) * (pa + pb) / 2.0 for (ta, pa), (tb, pb) in pairwise(pts)))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarise(samples: list[dict[str, Any]], output_tokens: int | None, t0: float | None = None,
              t1: float | None = None, not_exercised: str | None = None) -> dict[str, Any]:
    """Means and maxima of each series over the samples with t0 <= t_s <= t1, the achieved sampling
    interval (median gap between those samples) and the device energy over [t0, t1].

    Energy: power integrated by the trapezoid rule at the times it was read (device_t_s, else
    t_s), with the power at t0 / t1 interpolated from the samples either side where there are
    some; `device_energy_window_s` is the span actually covered (shorter than t1 - t0 where power
    was read for part of the window only). Joules per output token = energy / output_tokens.
    `not_exercised`: the sampler's `device_not_exercised`, reported when no power was read.
    """
    sel = [s for s in samples if _in(s["t_s"], t0, t1)]
    out: dict[str, Any] = {"telemetry_samples": len(sel)}
    ts = sorted(s["t_s"] for s in sel)
    gaps = [b - a for a, b in pairwise(ts)]
    out["telemetry_interval_s"] = statistics.median(gaps) if gaps else None
    for key in SERIES:
        vals = [s.get(key) for s in sel if _finite(s.get(key))]
        out[f"{key}_mean"] = statistics.fmean(vals) if vals else None
        out[f"{key}_max"] = max(vals) if vals else None
    procs = [s.get("server_num_procs") for s in sel if _finite(s.get("server_num_procs"))]
    out["server_num_procs_max"] = max(procs) if procs else None
    power = [(s.get("device_t_s", s["t_s"]), float(s["device_power_w"]))
             for s in samples if _finite(s.get("device_power_w"))]
    pts = _clipped(power, t0, t1)
    out.update({"device_energy_j": None, "device_energy_window_s": None, "device_joules_per_output_token": None,
                "device_not_exercised": None, "device_not_exercised_zh": None,
                "joules_per_token_not_computed": None, "joules_per_token_not_computed_zh": None})
    if len(pts) >= 2:
        energy = trapezoid_energy_j(pts)
        out["device_energy_j"] = energy
        out["device_energy_window_s"] = pts[-1][0] - pts[0][0]
        if isinstance(output_tokens, int) and output_tokens > 0:
            out["device_joules_per_output_token"] = energy / output_tokens
        else:
            out["joules_per_token_not_computed"] = f"no output token count (got {output_tokens!r})"
            out["joules_per_token_not_computed_zh"] = f"没有输出 token 数（得到 {output_tokens!r}）"
        return out
    if not_exercised == CPU_ONLY_REASON[0]:
        out["device_not_exercised"], out["device_not_exercised_zh"] = CPU_ONLY_REASON
    elif not_exercised:
        out["device_not_exercised"] = not_exercised
        out["device_not_exercised_zh"] = "未测量：" + not_exercised.removeprefix("not exercised: ")
    elif not power:
        out["device_not_exercised"] = "not exercised: no device power reading among the samples"
        out["device_not_exercised_zh"] = "未测量：样本中没有设备功耗读数"
    else:
        out["device_not_exercised"] = (f"not exercised: fewer than two device power readings in the window "
                                       f"({len(pts)}); sample longer or more often")
        out["device_not_exercised_zh"] = f"未测量：时间窗内设备功耗读数少于两个（{len(pts)} 个）；请延长采样或提高采样频率"
    out["joules_per_token_not_computed"] = "no device energy: see device_not_exercised"
    out["joules_per_token_not_computed_zh"] = "没有设备能耗：见“设备未测量原因”"
    return out
