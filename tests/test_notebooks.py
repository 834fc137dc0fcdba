"""Notebook rules (DESIGN.md): stored without outputs, tagged parameters cell with literal CPU
defaults, no logic, each `.ipynb` paired with its jupytext percent script `notebooks/NN_<section>.py`
(the source of truth) and in sync with it, and the notebook code lint-clean."""

import ast
import json
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_paired_with_its_percent_script_and_in_sync(path):
    import jupytext

    script = path.with_suffix(".py")
    assert script.is_file(), f"{script.name} missing: run `jupytext --sync {path.name}`"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
    text = jupytext.read(script)
    assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in text.cells] == \
        [(c["cell_type"], "".join(c["source"]), c["metadata"].get("tags", [])) for c in nb["cells"]], \
        f"{path.name} and {script.name} differ: edit one, then `jupytext --sync notebooks/{script.name}`"


def test_every_percent_script_has_its_notebook():
    scripts = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert scripts == [p.stem for p in NOTEBOOKS]


def test_notebook_code_is_lint_clean():
    """pyflakes-level checks (undefined names, unused imports, redefinitions) on the percent scripts."""
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,E9", "--no-cache",
                           *map(str, sorted((ROOT / "notebooks").glob("*.py")))],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
