"""Preflight: what every section would hit, checked once before any section runs.

A model that does not resolve, a truncated weight file, an endpoint that does not answer or does
not serve the named model, a device the params name that is not there: each is one line saying
what is wrong and what is allowed, found in seconds, before a run directory or an index entry
exists. `ascendeval run` stops with exit status 2 on it; `ascendeval validate --preflight` does
the same checks without running.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import models


class PreflightError(ValueError):
    """One line: what is wrong and what is allowed."""


RESOLVED_MODEL_ENV = "ASCENDEVAL_RESOLVED_MODEL"  # the model resolved once, for the section kernels


@dataclass
class Preflight:
    model: models.ResolvedModel | None = None
    notes: list[str] = field(default_factory=list)  # what was checked, for the log

    @property
    def model_path(self) -> Path | None:
        return self.model.path if self.model else None

    def env_value(self) -> str | None:
        """The resolved model as the kernels receive it (SectionRun.model() reads it back)."""
        if self.model is None:
            return None
        m = self.model
        return json.dumps({"id": m.id, "path": str(m.path), "revision": m.revision, "source": m.source})


def check_weights(model_dir: Path) -> int:
    """Read every safetensors header and check the file holds all the bytes the header promises.
    Returns the number of files checked; PreflightError names the first bad one."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files and not any(model_dir.glob("*.bin")) and not any(model_dir.glob("*.pt")):
        raise PreflightError(f"{model_dir}: no weight files (*.safetensors, *.bin or *.pt); "
                             "allowed: a Hugging Face-format model directory with its weights")
    for path in files:
        size = path.stat().st_size
        try:
            with open(path, "rb") as fh:
                raw = fh.read(8)
                if len(raw) < 8:
                    raise ValueError("shorter than the 8-byte header length")
                (n,) = struct.unpack("<Q", raw)
                if n > size - 8:
                    raise ValueError(f"header of {n} bytes does not fit in the file ({size} bytes)")
                header = json.loads(fh.read(n))  # read once, here (models.safetensors_header's format)
        except (ValueError, OSError) as exc:  # JSONDecodeError is a ValueError
            raise PreflightError(f"{path}: not a readable safetensors file ({exc}); "
                                 "re-download or re-convert the weights") from None
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise PreflightError(f"{path}: truncated: the header promises {8 + n + end} bytes, the file has "
                                 f"{size}; re-download the weights")
    return len(files)


def check_endpoint(url: str, model: str | None, api_key: str | None, timeout_s: float = 10.0) -> list[str]:
    """The endpoint answers /v1/models and (when named) serves `model`. Returns the served ids."""
    from . import loadgen

    try:
        served = loadgen.list_models(url, api_key, timeout_s=timeout_s)
    except Exception as exc:  # noqa: BLE001 - EndpointError and transport errors alike: one line
        raise PreflightError(f"server.url {url}: {str(exc).splitlines()[0][:200]}; "
                             "start the server or fix server.url") from None
    if model and model not in served:
        raise PreflightError(f"server.url {url} serves {', '.join(served) or 'no model'}, not "
                             f"server.served_model_name {model!r}; allowed: {', '.join(served)}")
    return served


def check_device(kind: str, count: int) -> str:
    """The accelerator the params name is present, in the number asked for. Counts devices
    without initialising one (torch_npu and CUDA count without creating a context), so a later
    forked engine worker is not affected."""
    if kind == "cpu":
        return "cpu"
    try:
        import torch  # noqa: PLC0415

        if kind == "npu":
            import torch_npu  # noqa: F401, PLC0415
        n = int(getattr(torch, kind).device_count())
    except Exception as exc:  # noqa: BLE001 - missing package or driver: one line
        raise PreflightError(f"target.device {kind!r}: not usable here ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); allowed here: cpu") from None
    if n < count:
        raise PreflightError(f"target.device {kind!r} x{count} (target.count): {n} visible"
                             + ("" if n else "; allowed here: cpu"))
    return f"{kind} x{n}"


def run(cfg: Any) -> Preflight:
    """Every check the params call for. Raises PreflightError at the first failure."""
    out = Preflight()
    if cfg.server.url:  # a deployment that is already running
        served = check_endpoint(cfg.server.url, cfg.server.served_model_name, cfg.server.api_key)
        out.notes.append(f"endpoint {cfg.server.url} serves {', '.join(served)}")
    # the workbook starts an engine or a server itself: it needs the weights and the device
    if cfg.target.engine != "openai" or not cfg.server.url:
        try:
            resolved = models.resolve(cfg.model)
        except models.ModelResolveError as exc:
            raise PreflightError(str(exc)) from None
        out.model = resolved
        n = check_weights(resolved.path)
        out.notes.append(f"model {cfg.model.id} at {resolved.path} ({n} safetensors file(s) intact)")
        out.notes.append(f"device {check_device(cfg.target.device, cfg.target.count)}")
    return out
