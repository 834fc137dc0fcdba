"""Resolve params' model id to a local directory: local path, ModelScope id, or builtin:<name>.

(Interim version by the lead so other sections can run; the models helper extends it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


class ModelResolveError(ValueError):
    """The model cannot be found or fetched; one line saying what and what is allowed."""


@dataclass
class ResolvedModel:
    path: Path
    id: str
    revision: str | None
    source: Literal["local", "modelscope", "builtin"]


def resolve(model_cfg) -> ResolvedModel:
    mid = model_cfg.id
    if mid.startswith("builtin:"):
        from . import builtin_models

        name = mid.split(":", 1)[1]
        if name not in builtin_models.BUILTIN_NAMES:
            raise ModelResolveError(f"model.id {mid!r}: unknown builtin; allowed: "
                                    + ", ".join(f"builtin:{n}" for n in builtin_models.BUILTIN_NAMES))
        return ResolvedModel(builtin_models.ensure(name), mid, None, "builtin")
    p = Path(mid).expanduser()
    if p.exists() or mid.startswith(("/", ".", "~")):
        if not (p / "config.json").is_file():
            raise ModelResolveError(f"model.id {mid!r}: no model directory with config.json at {p.resolve()}")
        return ResolvedModel(p.resolve(), mid, None, "local")
    raise ModelResolveError(f"model.id {mid!r}: ModelScope download not available in this interim resolver")
