"""benchmarks/device_check.py must run on a GPU host that has torch + transformers but no vLLM and
none of the workbook's extras, from a plain copy of the checkout (PYTHONPATH=.).

Two checks: (1) static: the ascendeval modules the script uses, and everything they import at
module level, import nothing outside the standard library and the host's packages; (2) the whole
script runs on this CPU with the extras made unimportable, and every step reports ok.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"
# What the GPU host has (tokenizers, huggingface_hub come with transformers).
HOST_PACKAGES = {"torch", "transformers", "tokenizers", "numpy", "pandas", "yaml", "pydantic", "safetensors", "psutil"}
# The workbook's extras that the GPU host lacks; made unimportable for the end-to-end run.
BLOCKED = ("vllm", "vllm_ascend", "torch_npu", "papermill", "nbconvert", "nbformat", "jupytext", "modelscope",
           "httpx", "aiohttp", "openai", "matplotlib", "IPython", "pyarrow", "sglang", "pandas")
# The ascendeval modules device_check.py imports (inside its steps).
USED = ("device", "sections.environment.probe", "builtin_models", "engines.hf_engine", "engines.base",
        "sections.precision.steps", "precision_metrics", "sections.quality.steps", "metrics", "config",
        "benchmarks_data")


def _module_file(name: str) -> Path:
    """'' is the package itself, 'engines.hf_engine' a submodule."""
    base = ROOT / "ascendeval" / Path(*name.split(".")) if name else ROOT / "ascendeval"
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _module_level_imports(name: str) -> tuple[set[str], set[str]]:
    """(third-party top-level names, ascendeval modules) that `name` imports at module level:
    the module body and its if/try/with/class blocks, not function bodies (lazy imports)."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    external: set[str] = set()
    internal: set[str] = set()

    def resolve(level: int, module: str | None) -> str:
        parts = package.split(".") if package else []
        parts = parts[: len(parts) - (level - 1)]
        return ".".join([*parts, *(module.split(".") if module else [])])

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "ascendeval" or a.name.startswith("ascendeval."):
                        internal.add(a.name.partition(".")[2])
                    else:
                        external.add(a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module and node.module.split(".")[0] != "ascendeval":
                    external.add(node.module.split(".")[0])
                    continue
                base = resolve(node.level, node.module) if node.level else node.module.partition(".")[2]
                internal.add(base)
                # `from . import a`: a may be a submodule
                internal.update(f"{base}.{a.name}".lstrip(".") for a in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, None) or [])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return external, {m for m in internal if _module_file(m).is_file()}


def test_used_modules_import_only_host_packages():
    seen: set[str] = set()
    todo = list(USED)
    offenders: dict[str, set[str]] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        external, internal = _module_level_imports(name)
        bad = {m for m in external - HOST_PACKAGES if m not in sys.stdlib_module_names and m != "__future__"}
        if bad:
            offenders[name or "ascendeval"] = bad
        todo.extend(internal)
        if name:  # importing a submodule runs its packages' __init__ first
            todo.append(name.rpartition(".")[0])
    # the walk reached the package __init__ and what it imports (context -> config, records, paths)
    assert {"", "context", "config", "records", "paths", "engines"} <= seen, seen
    assert not offenders, f"module-level imports the GPU host does not have: {offenders}"


@pytest.mark.e2e
def test_device_check_runs_on_cpu_without_extras(tmp_path):
    out = tmp_path / "dc.json"
    # sys.modules[name] = None makes `import name` raise ImportError and find_spec return None,
    # as on a host where the package is not installed.
    boot = (f"import sys, runpy; sys.modules.update(dict.fromkeys({BLOCKED!r})); "
            f"sys.argv = [{str(SCRIPT)!r}, '--device', 'cpu', '--json', {str(out)!r}]; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", boot], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    steps = {s["step"]: s for s in data["steps"]}
    assert list(steps) == ["environment", "device", "model", "hf_engine", "precision", "quality"]
    assert all(s["status"] == "ok" for s in steps.values()), {k: s["error"] for k, s in steps.items()}
    assert 250 <= steps["device"]["figures"]["alloc_delta_mib"] <= 282
    hf = steps["hf_engine"]["details"]["rows"]
    assert hf and all(0 < r["ttft_ms"] < r["e2e_ms"] and r["output_tokens"] == 32 for r in hf)
    tf = steps["precision"]["details"]["teacher_forced"]
    assert tf["num_positions"] > 0 and -1 <= tf["mean_cosine"] <= 1 and tf["mean_kl"] >= 0
    assert steps["quality"]["figures"]["max_abs_logprob_diff"] >= 0
    assert "=== summary" in proc.stdout
