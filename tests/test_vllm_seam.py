"""One seam: nothing in the package or its benchmark scripts imports from vLLM except
ascendeval/engines/vllm_compat.py (tests may: they check the contract)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEAM = ROOT / "ascendeval" / "engines" / "vllm_compat.py"


def _vllm_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                      if a.name == "vllm" or a.name.startswith("vllm.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "vllm" or node.module.startswith("vllm.")):
            found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("vllm"):
                found.append(f"{path.name}:{node.lineno} import_module({arg.value!r})")
    return found


def test_only_the_seam_imports_vllm():
    files = [p for p in (ROOT / "ascendeval").rglob("*.py") if p != SEAM] + list((ROOT / "benchmarks").glob("*.py"))
    offenders = [hit for p in files for hit in _vllm_imports(p)]
    assert offenders == [], offenders
    assert _vllm_imports(SEAM), "the seam itself imports vLLM (the check would pass vacuously otherwise)"


def test_the_check_catches_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from vllm.config import VllmConfig\n    import vllm.envs\n")
    assert len(_vllm_imports(bad)) == 2
