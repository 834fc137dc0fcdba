"""Regenerate every notebooks/NN_*.ipynb from scripts/notebooks/nbNN_*.py."""

import runpy
import sys
from pathlib import Path

here = Path(__file__).resolve().parent / "notebooks"
sys.path.insert(0, str(here))
for script in sorted(here.glob("nb[0-9][0-9]_*.py")):
    runpy.run_path(str(script), run_name="__main__")
    print(f"wrote notebook from {script.name}")
