"""Run one workbook notebook with papermill, as the runner does, for the e2e tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def execute(notebook: str, params_file: Path, run_dir: Path, out: Path, extra_paths: tuple[Path, ...] = ()) -> None:
    """notebooks/<notebook>.ipynb on `params_file`, writing its run into `run_dir`. The kernel
    imports the checkout's package (and `extra_paths`, e.g. a fault to inject); PYTHONPATH is set
    for this call only (a leaked one would make later tests' subprocesses import the checkout too)."""
    import papermill as pm

    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *map(str, extra_paths)] + ([env_path] if env_path else []))
    try:
        pm.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(out),
                            parameters={"params_file": str(params_file), "run_dir": str(run_dir)},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_path
