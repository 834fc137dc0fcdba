"""Telemetry under load (ascendeval/telemetry.py): a real busy process tree sampled by the real
thread; npu-smi / nvidia-smi output recorded on real machines fed through the injected tool seam;
energy checked against trapezoids computed by hand; a missing tool recorded once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import psutil
import pytest

from ascendeval import catalog
from ascendeval.device import MIB
from ascendeval.telemetry import (
    CPU_ONLY_REASON,
    NVIDIA_SMI_ARGS,
    Sampler,
    summarise,
    trapezoid_energy_j,
)

FIX = Path(__file__).parent / "fixtures"
CUDA_SERIES = [FIX / "nvidia-smi" / f"query_gpu_index_name_mem_util_power_rtx3090_a6000_{n}.csv"
               for n in ("1_pre-ref", "2_pre-rust", "3_post-rust")]
# seconds between the three witness blocks of that run: 23:27:41Z, 23:27:43Z, 23:27:46Z
CUDA_TIMES = [0.0, 2.0, 5.0]


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Replay:
    """A device tool that prints recorded outputs one after the other and records its calls."""

    def __init__(self, *texts: str):
        self.texts = list(texts)
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]):
        self.calls.append(args)
        return self.texts[min(len(self.calls), len(self.texts)) - 1], None


def _telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ascendeval-telemetry"]


# --------------------------------------------------------------------------- a real process tree

BUSY_TREE = ("import subprocess, sys, time\n"
             "subprocess.Popen([sys.executable, '-c', 'while True: pass']).wait()\n"
             "time.sleep(60)\n")


def test_a_busy_process_tree_is_sampled_and_the_thread_stops():
    """Root idle, its child spinning: the child's CPU is the server's; when the child is killed
    mid-run the tree shrinks and sampling goes on; stop() ends the thread."""
    root = subprocess.Popen([sys.executable, "-c", BUSY_TREE])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(root.pid).children() and time.monotonic() < deadline:
            time.sleep(0.02)
        (child,) = psutil.Process(root.pid).children()
        time.sleep(0.2)
        sampler = Sampler(root.pid, "cpu", interval_s=0.2)
        sampler.start()
        assert sampler.running and len(_telemetry_threads()) == 1
        time.sleep(1.5)
        n_busy = len(sampler.samples)
        child.kill()
        child.wait(5)
        time.sleep(0.7)
        samples = sampler.stop()
    finally:
        for proc in psutil.Process(root.pid).children(recursive=True):
            proc.kill()
        root.kill()
        root.wait(5)

    assert not sampler.running and _telemetry_threads() == []
    assert sampler.errors == []
    busy, after = samples[:n_busy], samples[n_busy + 1:]  # the sample straddling the kill is left out
    assert 5 <= len(busy) <= 9 and len(after) >= 2
    # primed at start: the very first sample is a real measurement, not a placeholder 0
    assert busy[0]["server_cpu_percent"] is not None and busy[0]["server_cpu_percent"] > 20
    assert sum(s["server_cpu_percent"] > 30 for s in busy) >= 0.7 * len(busy), [s["server_cpu_percent"] for s in busy]
    assert all(s["server_num_procs"] == 2 for s in busy)
    assert all(s["server_rss_bytes"] > 1_000_000 for s in samples)
    assert all(0 <= s["host_cpu_percent"] <= 100 for s in samples)
    assert all(s["server_num_procs"] == 1 and s["server_cpu_percent"] < 20 for s in after)
    assert all(s["device_power_w"] is None and "device_chips" not in s for s in samples)
    gaps = [b["t_s"] - a["t_s"] for a, b in pairwise(samples)]
    assert all(0.1 < g < 0.5 for g in gaps), gaps

    summary = sampler.summarise(output_tokens=100)
    assert summary["telemetry_samples"] == len(samples)
    assert 0.17 < summary["telemetry_interval_s"] < 0.3
    assert summary["server_num_procs_max"] == 2
    assert summary["server_cpu_percent_max"] > 50
    assert summary["device_energy_j"] is None and summary["device_joules_per_output_token"] is None
    assert (summary["device_not_exercised"], summary["device_not_exercised_zh"]) == CPU_ONLY_REASON


LATE_CHILD = ("import subprocess, sys, time\n"
              "time.sleep(0.3)\n"
              "subprocess.Popen([sys.executable, '-c', 'import time\\nt = time.time()\\n'\n"
              "                  'while time.time() - t < 0.5: pass\\ntime.sleep(60)'])\n"
              "time.sleep(60)\n")


def test_a_child_born_between_ticks_is_counted_from_its_creation_and_a_gone_root_reads_none():
    root = subprocess.Popen([sys.executable, "-c", LATE_CHILD])
    try:
        time.sleep(0.1)
        sampler = Sampler(root.pid, "cpu")
        sampler.prime()  # the tree is the root alone here
        assert psutil.Process(root.pid).children() == []
        time.sleep(1.2)  # the child appears at ~0.3 s and spins ~0.5 s
        sample = sampler.sample_once()
        for proc in psutil.Process(root.pid).children(recursive=True):
            proc.kill()
        root.kill()
        root.wait(5)
        gone = sampler.sample_once()
    finally:
        root.kill()
    # never primed, yet its ~0.5 s of CPU in this ~1.2 s interval is counted: ~40 % of a core
    assert sample["server_num_procs"] == 2
    assert 20 < sample["server_cpu_percent"] < 70, sample
    # the root has exited: no server figures, never zeros
    assert gone["server_num_procs"] == 0 and gone["server_cpu_percent"] is None and gone["server_rss_bytes"] is None


# --------------------------------------------------------------------------- npu-smi through the tool seam


@pytest.mark.parametrize("name, chips, power_w, mem_mib, util", [
    # 4x 910B4 under vLLM TP4 load (vllm-ascend issue 5847): HBM used, AI Core 67-68 %
    ("910b4_4npu_tp4_named_procs_vllm-ascend-5847.txt", 4, 152.0 + 162.7 + 156.2 + 159.8,
     30237 + 29980 + 29977 + 29986, (67 + 67 + 67 + 68) / 4),
    # Atlas A3: 8 NPUs x 2 chips, power printed on chip 0 only ('-' on chip 1)
    ("a3_ascend910_16chip_vllm-ascend-3002.txt", 16,
     211.3 + 210.6 + 205.7 + 209.9 + 219.9 + 214.0 + 201.9 + 205.5,
     61609 + 61625 + 61616 + 61619 + 61633 + 61623 + 61625 + 61628 + 61602 + 61618 + 61578 + 61603
     + 61614 + 61623 + 61627 + 61631, (7 * 14 + 8 + 6) / 16),
    # Ascend 310: no HBM column, the Memory column is the device memory
    ("310_atlas800-3000_gpustack.txt", 4, 4 * 12.8, 2703 + 3 * 2867, 0.0),
])
def test_npu_smi_recorded_outputs_become_device_fields(name, chips, power_w, mem_mib, util):
    tool = Replay((FIX / "npu-smi" / name).read_text(encoding="utf-8"))
    sampler = Sampler(None, "npu", tool=tool)
    sampler.prime()
    sample = sampler.sample_once()
    assert tool.calls == [["npu-smi", "info"]]
    assert len(sample["device_chips"]) == chips
    assert sample["device_power_w"] == pytest.approx(power_w)
    assert sample["device_mem_used_bytes"] == mem_mib * MIB
    assert sample["device_util_percent"] == pytest.approx(util)
    assert sampler.device_not_exercised is None


def test_npu_device_ids_keep_only_the_servers_npus():
    tool = Replay((FIX / "npu-smi" / "a3_ascend910_16chip_vllm-ascend-3002.txt").read_text(encoding="utf-8"))
    sample = Sampler(None, "npu", tool=tool, device_ids=[0, 1]).sample_once()
    assert [c["id"] for c in sample["device_chips"]] == [0, 0, 1, 1]
    assert sample["device_power_w"] == pytest.approx(211.3 + 210.6)
    assert sample["device_mem_used_bytes"] == (61609 + 61625 + 61616 + 61619) * MIB


# --------------------------------------------------------------------------- nvidia-smi and energy


def _cuda_series(device_ids=None) -> tuple[Sampler, Replay]:
    clock = FakeClock(-1.0)
    tool = Replay(*(p.read_text(encoding="utf-8") for p in CUDA_SERIES))
    sampler = Sampler(None, "cuda", tool=tool, device_ids=device_ids, clock=clock)
    sampler.prime()
    for t in CUDA_TIMES:
        clock.now = t
        sampler.sample_once()
    return sampler, tool


def test_nvidia_smi_recorded_series_is_parsed_by_header():
    sampler, tool = _cuda_series()
    assert tool.calls == [NVIDIA_SMI_ARGS] * 3
    assert NVIDIA_SMI_ARGS[1] == "--query-gpu=index,power.draw,memory.used,utilization.gpu"
    first, second, _ = sampler.samples
    assert [c["id"] for c in first["device_chips"]] == [0, 1]
    assert first["device_chips"][0] == {"id": 0, "power_w": 30.58, "mem_used_bytes": 1 * MIB, "util_percent": 0}
    assert second["device_power_w"] == pytest.approx(46.20 + 294.44)
    assert second["device_mem_used_bytes"] == (1 + 38742) * MIB
    assert second["device_util_percent"] == pytest.approx((57 + 100) / 2)
    assert [s["t_s"] for s in sampler.samples] == CUDA_TIMES
    assert [s["device_t_s"] for s in sampler.samples] == CUDA_TIMES


def test_energy_per_token_from_the_recorded_series_equals_the_hand_trapezoid():
    # GPU 0 (the measured RTX 3090): 30.58 W, 46.20 W, 140.62 W at 0 s, 2 s, 5 s
    sampler, _ = _cuda_series(device_ids=[0])
    hand = 2 * (30.58 + 46.20) / 2 + 3 * (46.20 + 140.62) / 2  # 76.78 + 280.23 = 357.01 J
    s = sampler.summarise(output_tokens=1000)
    assert s["device_energy_j"] == pytest.approx(357.01) == pytest.approx(hand)
    assert s["device_joules_per_output_token"] == pytest.approx(0.35701)
    assert s["device_energy_window_s"] == 5.0
    assert s["device_power_w_mean"] == pytest.approx((30.58 + 46.20 + 140.62) / 3)
    assert s["device_power_w_max"] == 140.62
    assert s["device_util_percent_mean"] == pytest.approx((0 + 57 + 70) / 3)
    assert s["device_mem_used_bytes_max"] == MIB
    assert s["telemetry_samples"] == 3 and s["telemetry_interval_s"] == 2.5
    assert s["device_not_exercised"] is None and s["joules_per_token_not_computed"] is None

    # both GPUs (the A6000 was serving another job): 326.19, 340.64, 438.71 W
    both = _cuda_series()[0].summarise(output_tokens=1000)
    assert both["device_energy_j"] == pytest.approx(2 * (326.19 + 340.64) / 2 + 3 * (340.64 + 438.71) / 2)
    assert both["device_energy_j"] == pytest.approx(1835.855)


def test_energy_window_edges_are_interpolated_not_extrapolated():
    sampler, _ = _cuda_series(device_ids=[0])
    s = sampler.summarise(output_tokens=None, t0=1.0, t1=4.0)
    p1 = 30.58 + (46.20 - 30.58) * 0.5          # 38.39 W at t=1
    p4 = 46.20 + (140.62 - 46.20) * 2 / 3       # 109.1467 W at t=4
    assert s["device_energy_j"] == pytest.approx(1 * (p1 + 46.20) / 2 + 2 * (46.20 + p4) / 2)
    assert s["device_energy_window_s"] == 3.0
    assert s["telemetry_samples"] == 1 and s["telemetry_interval_s"] is None
    assert s["device_joules_per_output_token"] is None
    assert s["joules_per_token_not_computed"].startswith("no output token count")
    # a window reaching past the last sample integrates only what was read
    tail = sampler.summarise(output_tokens=10, t0=2.0, t1=9.0)
    assert tail["device_energy_window_s"] == 3.0
    assert tail["device_energy_j"] == pytest.approx(3 * (46.20 + 140.62) / 2)


def test_summarise_by_hand_and_every_key_is_in_the_catalog():
    samples = [{"t_s": t, "host_cpu_percent": 10.0 * i, "server_cpu_percent": 100.0 + i, "server_rss_bytes": 1000 * (i + 1),
                "server_num_procs": 3, "device_power_w": w, "device_mem_used_bytes": None, "device_util_percent": None}
               for i, (t, w) in enumerate([(10.0, 200.0), (10.5, 300.0), (11.0, 300.0), (11.5, 100.0)])]
    assert trapezoid_energy_j([(s["t_s"], s["device_power_w"]) for s in samples]) == pytest.approx(
        0.5 * 250 + 0.5 * 300 + 0.5 * 200)
    s = summarise(samples, output_tokens=25)
    assert s["device_energy_j"] == pytest.approx(125.0 + 150.0 + 100.0)
    assert s["device_joules_per_output_token"] == pytest.approx(375.0 / 25)
    assert s["host_cpu_percent_mean"] == pytest.approx(15.0) and s["host_cpu_percent_max"] == 30.0
    assert s["server_rss_bytes_max"] == 4000 and s["device_mem_used_bytes_mean"] is None
    assert s["telemetry_interval_s"] == 0.5
    undeclared = catalog.undeclared_keys(s)
    assert undeclared == set(), undeclared
    assert all(catalog.check_value(k, v) is None for k, v in s.items())
    for reason in (summarise([], None), summarise(samples[:1], 5), summarise([], 5, not_exercised="not exercised: x")):
        assert catalog.undeclared_keys(reason) == set()
        assert reason["device_not_exercised"].startswith("not exercised: ")
        assert reason["device_not_exercised_zh"].startswith("未测量：")


# --------------------------------------------------------------------------- a tool that is missing or fails


def test_a_missing_tool_is_recorded_once_and_cpu_sampling_goes_on():
    calls = []

    def missing(args):
        calls.append(args)
        return None, f"{args[0]} not found on PATH"

    with Sampler(None, "npu", interval_s=0.05, tool=missing) as sampler:
        time.sleep(0.4)
    samples = sampler.samples
    assert calls == [["npu-smi", "info"]]
    assert sampler.device_not_exercised == "not exercised: npu-smi not found on PATH"
    assert len(samples) >= 4 and not sampler.running
    assert all(s["host_cpu_percent"] is not None and s["device_power_w"] is None for s in samples)
    s = sampler.summarise(output_tokens=100)
    assert s["device_not_exercised"] == "not exercised: npu-smi not found on PATH"
    assert s["device_not_exercised_zh"] == "未测量：npu-smi not found on PATH"
    assert s["device_energy_j"] is None and s["device_joules_per_output_token"] is None
    assert s["host_cpu_percent_mean"] is not None and s["telemetry_samples"] == len(samples)


def test_a_tool_that_fails_later_or_prints_no_table_is_given_up_once():
    good = (FIX / "nvidia-smi" / "query_gpu_index_uuid_mem_util_h200x8_exp23.csv").read_text(encoding="utf-8")
    outputs = iter([(good, None), (None, "nvidia-smi exited 15: GPU is lost")])
    calls = []

    def flaky(args):
        calls.append(args)
        return next(outputs)

    sampler = Sampler(None, "cuda", tool=flaky)
    first = [sampler.sample_once() for _ in range(4)]
    assert len(calls) == 2
    # that query has no power column: memory and utilisation are read, power is None (not 0)
    assert first[0]["device_power_w"] is None and first[0]["device_util_percent"] == pytest.approx(87.5)
    assert first[0]["device_mem_used_bytes"] == (130013 + 130053 + 105851 + 129993 + 106091 + 105851 + 106139 + 58071) * MIB
    assert sampler.device_not_exercised == ("not exercised: nvidia-smi exited 15: GPU is lost "
                                            "(device reads stopped after 1 good read(s))")

    junk = Sampler(None, "npu", tool=lambda args: ("command not supported\n", None))
    junk.sample_once()
    junk.sample_once()
    assert junk.device_not_exercised == "not exercised: npu-smi printed no chip row the parser recognises"
