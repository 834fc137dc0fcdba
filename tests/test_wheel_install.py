"""Install without a checkout: the wheel carries the notebooks, data and catalog; installed into a
fresh virtual environment (the engine stack reused from the test environment) it runs
`ascendeval run --sections environment,smoke` from an unrelated directory."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def test_the_wheel_runs_the_workbook_outside_the_checkout(tmp_path):
    # nothing may point the installed environment back at the checkout
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASCENDEVAL_OUTPUTS")}
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("ascendeval-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ascendeval/notebooks/01_smoke.ipynb" in names and "ascendeval/data/metrics.yaml" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], env=clean, check=True, timeout=300)
    vpy = venv / "bin" / "python"
    # reuse the engine stack (torch, vllm, transformers, papermill, ...) of this environment: a
    # plain path entry, so this environment's editable install of the checkout is not picked up
    vsite = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                env=clean, check=True, capture_output=True, text=True).stdout.strip())
    (vsite / "engine_stack.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], env=clean, check=True,
                   capture_output=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(vpy), "-c", "import ascendeval, ascendeval.paths as p; "
                            "print(ascendeval.__file__); print(p.notebooks_dir())"],
                           cwd=elsewhere, env=clean, check=True, capture_output=True, text=True).stdout.split()
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)), where  # not the checkout's

    params = elsewhere / "tiny.yaml"
    params.write_text("model: {id: 'builtin:tiny-qwen2-untrained', name: tiny-wheel, max_model_len: 512}\n"
                      "target: {engine: hf, device: cpu}\n"
                      "sections: {environment: {probes: false}, smoke: {max_tokens: 4, serve: false}}\n")
    # the reused stack's data files too (nbconvert's templates live in <prefix>/share/jupyter)
    env = {**clean, "ASCENDEVAL_CACHE_DIR": str(ROOT / ".cache"), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
           "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter")}
    proc = subprocess.run([str(venv / "bin" / "ascendeval"), "run", str(params), "--sections", "environment,smoke",
                           "--run-id", "w", "--no-progress"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = elsewhere / "outputs" / "tiny-wheel" / "w"
    for section in ("environment", "smoke"):
        rec = json.loads((run_dir / "records" / f"{section}.json").read_text())
        assert rec["status"] == "ok", (section, rec.get("reason"))
    assert (run_dir / "01_smoke.html").is_file()
