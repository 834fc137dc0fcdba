"""The device seam: npu-smi / nvidia-smi parsers on outputs recorded from real machines, the CPU
path of `Device`, and the bandwidth / matmul probes on this machine's CPU.

The NPU and CUDA code paths of `Device` cannot run here (no accelerator, no torch_npu); they are
covered by the parsers and by the "unavailable" checks below, never claimed as exercised.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from ascendeval import device
from ascendeval.device import (Device, DeviceUnavailable, parse_npu_smi_header, parse_npu_smi_info,
                               parse_npu_smi_processes, parse_nvidia_smi_csv)

FIX = Path(__file__).parent / "fixtures"


def npu(name: str) -> str:
    return (FIX / "npu-smi" / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- npu-smi: 910B (A2)


def test_910b3_table_every_chip():
    text = npu("910b3_8npu_vllm-ascend-5876.txt")
    chips = parse_npu_smi_info(text)
    assert [c["npu_id"] for c in chips] == list(range(8))
    assert {c["name"] for c in chips} == {"910B3"}
    assert {c["health"] for c in chips} == {"OK"}
    assert [c["power_w"] for c in chips] == [100.9, 96.2, 90.5, 97.7, 93.6, 97.0, 100.0, 93.5]
    assert [c["temp_c"] for c in chips] == [40, 39, 39, 39, 44, 43, 42, 42]
    assert [c["hbm_used_mb"] for c in chips] == [58626, 58626, 58627, 58626, 58626, 58626, 58626, 58626]
    assert {c["hbm_total_mb"] for c in chips} == {65536}
    assert [c["bus_id"] for c in chips] == ["0000:C1:00.0", "0000:C2:00.0", "0000:81:00.0", "0000:82:00.0",
                                           "0000:01:00.0", "0000:02:00.0", "0000:41:00.0", "0000:42:00.0"]
    first = chips[0]
    assert first["chip_id"] == 0 and first["phy_id"] is None and first["device_id"] is None
    assert first["aicore_pct"] == 0
    assert (first["memory_used_mb"], first["memory_total_mb"]) == (0, 0)
    assert (first["hugepages_used_pages"], first["hugepages_total_pages"]) == (0, 0)
    assert parse_npu_smi_header(text) == {"npu_smi_version": "25.3.rc1", "driver_version": "25.3.rc1"}


def test_910b3_process_table():
    procs = parse_npu_smi_processes(npu("910b3_8npu_vllm-ascend-5876.txt"))
    assert [p["pid"] for p in procs] == list(range(71867, 71875))
    assert [p["npu_id"] for p in procs] == list(range(8))
    assert {p["memory_mb"] for p in procs} == {55278}
    assert {p["process_name"] for p in procs} == {None}  # the name column is blank in this output


def test_910b4_32gb_and_no_processes():
    text = npu("910b4_8npu_vllm-ascend-1875.txt")
    chips = parse_npu_smi_info(text)
    assert len(chips) == 8
    assert {c["name"] for c in chips} == {"910B4"}
    assert {c["hbm_total_mb"] for c in chips} == {32768}
    assert [c["hbm_used_mb"] for c in chips] == [2828, 2829, 2828, 2828, 2829, 2829, 2829, 2829]
    assert chips[7]["power_w"] == 93.8 and chips[7]["temp_c"] == 54
    assert parse_npu_smi_processes(text) == []  # "No running processes found in NPU n"
    assert parse_npu_smi_header(text)["driver_version"] == "24.1.rc3"


# --------------------------------------------------------------------------- npu-smi: other layouts


def test_a3_two_chips_per_npu_with_phy_id():
    text = npu("a3_ascend910_16chip_vllm-ascend-3002.txt")
    chips = parse_npu_smi_info(text)
    assert len(chips) == 16
    assert [(c["npu_id"], c["chip_id"]) for c in chips[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [c["phy_id"] for c in chips] == list(range(16))
    assert {c["device_id"] for c in chips} == {None}
    # The second chip of each NPU prints '-' for power (board power is on chip 0): None, not 0.
    assert [c["power_w"] for c in chips[::2]] == [211.3, 210.6, 205.7, 209.9, 219.9, 214.0, 201.9, 205.5]
    assert {c["power_w"] for c in chips[1::2]} == {None}
    assert chips[8]["aicore_pct"] == 8 and chips[12]["aicore_pct"] == 6
    assert chips[0]["hbm_used_mb"] == 61609 and chips[15]["hbm_used_mb"] == 61631
    assert chips[15]["bus_id"] == "0000:83:00.0" and chips[15]["temp_c"] == 43
    procs = parse_npu_smi_processes(text)
    assert len(procs) == 23
    assert procs[8] == {"npu_id": 0, "chip_id": 1, "pid": 929405, "process_name": None, "memory_mb": 58780}
    assert parse_npu_smi_header(text)["npu_smi_version"] == "25.2.0"


def test_310_one_npu_four_chips_no_hbm_column():
    text = npu("310_atlas800-3000_gpustack.txt")
    chips = parse_npu_smi_info(text)
    assert [(c["npu_id"], c["chip_id"], c["device_id"]) for c in chips] == [(6, 0, 3), (6, 1, 4), (6, 2, 5), (6, 3, 6)]
    assert {c["name"] for c in chips} == {"310"}
    assert [c["temp_c"] for c in chips] == [73, 74, 70, 65]
    assert [c["memory_used_mb"] for c in chips] == [2703, 2867, 2867, 2867]
    assert {c["memory_total_mb"] for c in chips} == {8192}
    assert {c["hbm_used_mb"] for c in chips} == {None} and {c["hbm_total_mb"] for c in chips} == {None}
    assert {c["hugepages_total_pages"] for c in chips} == {970}
    assert parse_npu_smi_header(text) == {"npu_smi_version": "21.0.4", "driver_version": "21.0.4.B030"}


def test_910_a1_memory_and_hbm_pairs_and_warning_health():
    text = npu("910_atlas800-9010_gpustack.txt")
    chips = parse_npu_smi_info(text)
    assert len(chips) == 8
    assert [c["health"] for c in chips] == ["OK", "OK", "OK", "Warning", "OK", "OK", "OK", "Warning"]
    assert chips[3]["power_w"] == 206.9
    assert (chips[0]["memory_used_mb"], chips[0]["memory_total_mb"]) == (4252, 15137)
    assert (chips[3]["memory_used_mb"], chips[3]["memory_total_mb"]) == (3616, 15039)
    assert {(c["hbm_used_mb"], c["hbm_total_mb"]) for c in chips} == {(0, 32768)}
    assert {c["hugepages_used_pages"] for c in chips} == {1232}
    procs = parse_npu_smi_processes(text)
    assert len(procs) == 8 and procs[0]["process_name"] == "hlt_host_devmm_" and procs[0]["memory_mb"] == 686


def test_npu_smi_parser_on_non_table_text():
    assert parse_npu_smi_info("") == []
    assert parse_npu_smi_info("dcmi module initialize failed. ret is -8005") == []
    assert parse_npu_smi_header("") == {"npu_smi_version": None, "driver_version": None}


# --------------------------------------------------------------------------- nvidia-smi


def test_nvidia_smi_csv_recorded_h100():
    gpus = parse_nvidia_smi_csv((FIX / "nvidia-smi" / "h100x8_name_memory_total.txt").read_text())
    assert len(gpus) == 8
    assert gpus[0] == {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559}


def test_nvidia_smi_csv_units_and_not_available():
    # Shape of `--query-gpu=index,name,memory.used,utilization.gpu,power.draw --format=csv`
    # with the tool's '[N/A]' marker; checks key naming and None for unavailable values.
    text = ("index, name, memory.used [MiB], utilization.gpu [%], power.draw [W]\n"
            "0, NVIDIA H100 80GB HBM3, 1024 MiB, 37 %, [N/A]\n")
    assert parse_nvidia_smi_csv(text) == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_used_mib": 1024,
                                           "utilization_gpu_pct": 37, "power_draw_w": None}]
    assert parse_nvidia_smi_csv("") == []


# --------------------------------------------------------------------------- the seam on this CPU


CPU_MEMORY_CHECK = """
import torch
from ascendeval import device
dev = device.Device("cpu")
before = dev.memory_allocated_bytes()
dev.reset_peak()
block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
during = dev.memory_allocated_bytes()
peak = dev.peak_memory_bytes()
del block
dev.synchronize()
dev.empty_cache()
info = dev.info()
import json
print(json.dumps([before, during, peak, info["total_memory_bytes"], info["memory_allocated_bytes"], dev.count(),
                  dev.name()]))
"""


def test_cpu_device_reports_real_process_memory():
    # A fresh interpreter: in the long pytest process, memory freed by earlier tests stays in RSS
    # and a new 64 MiB tensor can reuse it without RSS growing.
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CPU_MEMORY_CHECK], capture_output=True, text=True, check=True)
    before, during, peak, total, allocated, count, name = json.loads(out.stdout.strip().splitlines()[-1])
    assert count == 1 and name == device.cpu_model_name()
    assert before > 0
    assert during >= before + 48 * 1024 * 1024
    assert peak >= during
    assert total > allocated > 0


def test_unknown_kind_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown device kind 'tpu'; allowed: cpu, cuda, npu"):
        Device("tpu")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU host: CUDA may be usable")
def test_cuda_unavailable_says_why():
    with pytest.raises(DeviceUnavailable, match="device 'cuda' unavailable"):
        Device("cuda")


def test_npu_unavailable_says_why():
    try:
        import torch_npu  # noqa: F401
    except Exception:  # noqa: BLE001
        with pytest.raises(DeviceUnavailable, match="device 'npu' unavailable: import torch_npu failed"):
            Device("npu")
    else:
        pytest.skip("torch_npu importable: this is an Ascend host")


# --------------------------------------------------------------------------- probes on this CPU


def test_bandwidth_probe_positive_finite():
    bw = device.measure_bandwidth("cpu", mib=32, repeats=3)
    for key in ("copy_bandwidth_gbps", "read_bandwidth_gbps", "copy_median_ms", "read_median_ms"):
        assert device.is_finite_positive(bw[key]), (key, bw[key])
    assert len(bw["copy_samples_ms"]) == 3
    # median of the samples is what the GB/s figure was computed from
    assert math.isclose(bw["copy_bandwidth_gbps"], 2 * 32 * 2**20 / (bw["copy_median_ms"] / 1e3) / 1e9)


def test_matmul_probe_positive_finite_and_skips_what_does_not_fit():
    mm = device.measure_matmul("cpu", sizes=[64, 128], dtypes=["float32"], repeats=2, budget_s=None)
    assert [(r["size"], r["dtype"]) for r in mm["shapes"]] == [(64, "float32"), (128, "float32")]
    assert all(device.is_finite_positive(r["tflops"]) for r in mm["shapes"])
    best = max(mm["shapes"], key=lambda r: r["tflops"])
    assert (mm["matmul_fp32_tflops"], mm["matmul_fp32_best_size"]) == (best["tflops"], best["size"])
    # A budget far too small for 4096^3 bf16 on a CPU: the size is skipped with a reason, value None.
    tight = device.measure_matmul("cpu", sizes=[64, 4096], dtypes=["bfloat16"], repeats=1, budget_s=0.5)
    big = tight["shapes"][1]
    assert big["size"] == 4096 and big["tflops"] is None and "exceeds" in big["skipped"]
    assert device.is_finite_positive(tight["matmul_bf16_tflops"])


def test_probe_bad_input():
    with pytest.raises(ValueError, match="matmul dtype 'int8' not allowed"):
        device.measure_matmul("cpu", sizes=[8], dtypes=["int8"])
    with pytest.raises(ValueError, match="must be positive"):
        device.measure_bandwidth("cpu", mib=0)


def test_waiting_for_a_quiet_host_is_bounded_and_reports_the_load():
    """A host kept busy (one spinning process per CPU) is waited for at most max_wait_s, and the
    busy share measured last is returned for the record."""
    import os
    import subprocess
    import sys
    import time as time_mod

    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time_mod.sleep(0.3)
        t0 = time_mod.perf_counter()
        waited, busy = device.wait_for_quiet_host(max_wait_s=1.0, busy_below=0.2, window_s=0.25)
        elapsed = time_mod.perf_counter() - t0
    finally:
        for p in spin:
            p.kill()
    assert 1.0 <= waited <= elapsed < 3.0
    assert busy >= 0.5  # the spinning processes hold the CPUs
