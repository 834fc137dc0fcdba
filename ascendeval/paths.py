"""Where things live: the project checkout, the cache for built-in models and compile caches,
and the outputs tree. Each can be moved with an environment variable."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path | None:
    """The source checkout holding this package (None when installed as a plain wheel)."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """ASCENDEVAL_CACHE_DIR, else <checkout>/.cache, else ~/.cache/ascendeval."""
    env = os.environ.get("ASCENDEVAL_CACHE_DIR")
    root = project_root()
    path = Path(env) if env else (root / ".cache" if root else Path.home() / ".cache" / "ascendeval")
    path.mkdir(parents=True, exist_ok=True)
    return path


def outputs_dir() -> Path:
    """ASCENDEVAL_OUTPUTS, else <checkout>/outputs, else ./outputs."""
    env = os.environ.get("ASCENDEVAL_OUTPUTS")
    root = project_root()
    return Path(env) if env else (root / "outputs" if root else Path.cwd() / "outputs")


def notebooks_dir() -> Path:
    """ASCENDEVAL_NOTEBOOKS, else <checkout>/notebooks, else the copy installed with the package."""
    env = os.environ.get("ASCENDEVAL_NOTEBOOKS")
    root = project_root()
    if env:
        return Path(env)
    if root is not None and (root / "notebooks").is_dir():
        return root / "notebooks"
    installed = PACKAGE_DIR / "notebooks"
    if any(installed.glob("*.ipynb")):
        return installed
    raise FileNotFoundError("notebooks not found: not in a source checkout and not installed with the package; "
                            "set ASCENDEVAL_NOTEBOOKS to a folder holding NN_<section>.ipynb")


def set_engine_cache_env() -> None:
    """Keep vLLM's and torch.compile's caches inside the project cache (re-used between runs)."""
    base = cache_dir()
    os.environ.setdefault("VLLM_CACHE_ROOT", str(base / "vllm"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(base / "inductor"))


@lru_cache(maxsize=1)
def git_hash() -> str | None:
    root = project_root()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
