"""Shared fixtures. End-to-end tests run the real runner (papermill + nbconvert) on the built-in
untrained tiny Qwen2 with real vLLM (eager) and transformers, writing under a temp outputs dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, name: str = "tiny", **overrides) -> Path:
    """A params file for the untrained tiny model; `overrides` replace top-level parts."""
    data = {
        "model": {"id": "builtin:tiny-qwen2-untrained", "name": name, "dtype": "bfloat16", "max_model_len": 1024},
        "target": {"engine": "vllm", "device": "cpu", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30},
        "sections": {"smoke": {"max_tokens": 8}},
    }
    for key, value in overrides.items():
        data[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_cli(args: list[str], outputs: Path, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASCENDEVAL_OUTPUTS": str(outputs)}
    return subprocess.run([sys.executable, "-m", "ascendeval.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def params_factory(tmp_path):
    return lambda name="tiny", **kw: write_params(tmp_path, name, **kw)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def unloadable_model(tmp_path):
    """A model directory that passes the preflight (config.json, intact weights) and fails when an
    engine loads it: its config names a model type no library knows. For tests of a section that
    fails at run time while the run goes on."""
    import json
    import shutil

    from ascendeval import builtin_models

    dest = tmp_path / "unloadable-model"
    shutil.copytree(builtin_models.ensure("tiny-qwen2-untrained"), dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["model_type"] = "no_such_model_type"
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest
