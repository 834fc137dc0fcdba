"""Preflight: a run that cannot work stops in seconds with one line and exit status 2, before a
run directory or an index entry exists; `validate --preflight` does the same without running."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ascendeval import builtin_models, config, preflight
from ascendeval.simserver import SimServer, SimSpec


def _cli(args: list[str], outputs: Path) -> subprocess.CompletedProcess:
    env = {"ASCENDEVAL_OUTPUTS": str(outputs), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "ascendeval.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def tiny():
    return builtin_models.ensure("tiny-qwen2-untrained")


def _params(tmp_path: Path, model_id: str, **extra: str) -> Path:
    p = tmp_path / "p.yaml"
    body = f"model: {{id: '{model_id}', name: pf}}\ntarget: {{engine: vllm, device: cpu}}\n"
    for k, v in extra.items():
        body += f"{k}: {v}\n"
    p.write_text(body)
    return p


def test_missing_model_stops_before_anything_runs(tmp_path):
    out = tmp_path / "outputs"
    t0 = time.monotonic()
    proc = _cli(["run", str(_params(tmp_path, "/nonexistent/model-dir"))], out)
    assert proc.returncode == 2
    assert time.monotonic() - t0 < 60
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and "no such directory /nonexistent/model-dir; allowed:" in line[0]
    assert not out.exists()  # no run directory, no index entry
    assert "Traceback" not in proc.stderr


def test_truncated_safetensors_is_named(tmp_path, tiny):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny, broken)
    weights = sorted(broken.glob("*.safetensors"))[0]
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(preflight.PreflightError, match=rf"{weights.name}: truncated: the header promises"):
        preflight.run(config.parse({"model": {"id": str(broken)}}))
    proc = _cli(["validate", "--preflight", str(_params(tmp_path, str(broken)))], tmp_path / "o")
    assert proc.returncode == 2 and "truncated" in proc.stderr and "Traceback" not in proc.stderr
    # the weights scan names the same file in one line
    proc = _cli(["weights", "scan", str(broken)], tmp_path / "o")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{weights.name}: truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_garbage_weights_are_named(tmp_path, tiny):
    broken = tmp_path / "garbage-model"
    shutil.copytree(tiny, broken)
    sorted(broken.glob("*.safetensors"))[0].write_bytes(b"\x07")
    with pytest.raises(preflight.PreflightError, match="not a readable safetensors file"):
        preflight.check_weights(broken)


def test_a_good_model_passes_and_says_what_was_checked(tiny):
    res = preflight.run(config.parse({"model": {"id": "builtin:tiny-qwen2-untrained"}}))
    assert res.model_path == tiny
    assert any("intact" in n for n in res.notes) and any(n.startswith("device cpu") for n in res.notes)


def test_running_deployment_endpoint_and_served_name():
    sim = SimServer(SimSpec()).start()
    try:
        ok = config.parse({"model": {"id": "whatever/model"}, "target": {"engine": "openai"},
                           "server": {"kind": "external", "url": sim.url, "served_model_name": sim.spec.model}})
        assert any("serves" in n for n in preflight.run(ok).notes)
        wrong = config.parse({"model": {"id": "whatever/model"}, "target": {"engine": "openai"},
                              "server": {"kind": "external", "url": sim.url, "served_model_name": "other"}})
        with pytest.raises(preflight.PreflightError, match=rf"serves {sim.spec.model}, not server.served_model_name 'other'"):
            preflight.run(wrong)
    finally:
        sim.stop()
    down = config.parse({"model": {"id": "whatever/model"}, "target": {"engine": "openai"},
                         "server": {"kind": "external", "url": "http://127.0.0.1:9"}})
    with pytest.raises(preflight.PreflightError, match="server.url http://127.0.0.1:9"):
        preflight.run(down)


def test_a_device_that_is_not_here():
    with pytest.raises(preflight.PreflightError, match="target.device 'npu': not usable here"):
        preflight.check_device("npu", 1)
    with pytest.raises(preflight.PreflightError, match="target.device 'cuda'"):
        preflight.check_device("cuda", 1)


def test_sections_use_the_model_the_preflight_resolved(tmp_path, monkeypatch, tiny):
    from ascendeval import models
    from ascendeval.context import SectionRun

    res = preflight.run(config.parse({"model": {"id": "builtin:tiny-qwen2-untrained"}}))
    monkeypatch.setenv(preflight.RESOLVED_MODEL_ENV, res.env_value())
    monkeypatch.setattr(models, "resolve", lambda cfg: (_ for _ in ()).throw(AssertionError("resolved again")))
    params = _params(tmp_path, "builtin:tiny-qwen2-untrained")
    run = SectionRun("smoke", params, tmp_path / "run")
    assert run.model().path == tiny and run.model().source == "builtin"


def test_a_model_directory_without_weights(tmp_path, tiny):
    empty = tmp_path / "config-only"
    empty.mkdir()
    shutil.copyfile(tiny / "config.json", empty / "config.json")
    with pytest.raises(preflight.PreflightError, match="no weight files"):
        preflight.check_weights(empty)


@pytest.mark.parametrize("args", [["build-model", "nosuch"], ["weights", "scan", "/nonexistent"],
                                  ["verify", "/nonexistent"], ["index", "/nonexistent/dir"]])
def test_every_cli_error_is_one_line(tmp_path, args):
    proc = _cli(args, tmp_path / "o")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = _cli(["--debug", "build-model", "nosuch"], tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" in proc.stderr
