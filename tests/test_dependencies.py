"""Every third-party module the package imports is declared in pyproject.toml, or belongs to the
engine stack each target brings itself (torch, transformers, vLLM and their Ascend builds)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name where they differ
DIST = {"yaml": "pyyaml", "IPython": "ipython", "prometheus_client": "prometheus-client"}
ENGINE_STACK = {"torch", "torch_npu", "transformers", "tokenizers", "vllm", "vllm_ascend"}


def _imports() -> set[str]:
    mods = set()
    for path in (ROOT / "ascendeval").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m != "ascendeval"}


# optional extras: imported only where the feature runs (lm-eval: the quality section's lm_eval
# step, which is skipped with the install command when it is missing)
OPTIONAL = {"lm_eval": "lm-eval"}


def test_every_import_is_declared_or_engine_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for d in sum(project["optional-dependencies"].values(), [])
                                      if d.split("[")[0].split("=")[0] in OPTIONAL.values()]
    declared = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    missing = sorted(m for m in _imports() - ENGINE_STACK
                     if DIST.get(m, m).lower().replace("_", "-") not in declared)
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"


def test_optional_extras_are_not_imported_with_the_package():
    """`import ascendeval` and every section module work without the optional extras."""
    import subprocess

    code = ("import sys, importlib, pkgutil, ascendeval, ascendeval.sections as s\n"
            "for m in pkgutil.walk_packages(s.__path__, 'ascendeval.sections.'): importlib.import_module(m.name)\n"
            f"print(sorted(set({sorted(OPTIONAL)!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
