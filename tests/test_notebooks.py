"""Notebook rules (DESIGN.md): stored without outputs, tagged parameters cell with literal CPU
defaults, no logic, and identical to what scripts/notebooks/ generates."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LOGIC = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.AsyncFor, ast.While, ast.If,
         ast.Try, ast.With, ast.Lambda, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp, ast.IfExp)


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert "01_smoke.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_parameters_cell(path):
    cs = cells(path)
    assert cs[0]["cell_type"] == "markdown" and len("".join(cs[0]["source"])) > 80, "cell 1 explains the section"
    assert "parameters" in cs[1]["metadata"].get("tags", []), "cell 2 is the tagged parameters cell"
    params = ast.parse("".join(cs[1]["source"]))
    names = {t.id for node in params.body if isinstance(node, ast.Assign) for t in node.targets}
    assert {"params_file", "run_dir"} <= names
    assert all(isinstance(node.value, ast.Constant) for node in params.body if isinstance(node, ast.Assign)), \
        "parameters are literals"
    for c in cs:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_logic_in_notebooks(path):
    for i, c in enumerate(cells(path)):
        if c["cell_type"] != "code":
            continue
        tree = ast.parse("".join(c["source"]))
        bad = [type(n).__name__ for n in ast.walk(tree) if isinstance(n, LOGIC)]
        assert not bad, f"{path.name} cell {i} holds logic ({', '.join(bad)}): move it into ascendeval/"


def test_committed_notebooks_match_generators(tmp_path):
    env = {**os.environ, "NOTEBOOKS_OUT": str(tmp_path)}
    subprocess.run([sys.executable, str(ROOT / "scripts/make_notebooks.py")], check=True, env=env,
                   capture_output=True)
    generated = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert generated == [p.name for p in NOTEBOOKS]
    for name in generated:
        assert (tmp_path / name).read_text() == (ROOT / "notebooks" / name).read_text(), \
            f"{name} differs from its generator: run scripts/make_notebooks.py"
