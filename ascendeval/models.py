"""Resolve params' `model.id` to a local model directory.

Three kinds of id (checked in this order):

- `builtin:<name>`: a model made locally by `builtin_models` (cached; built on first use).
- a local directory holding `config.json` (an existing path, or anything written like a path:
  absolute, `./`, `../`, `~`).
- a ModelScope id `org/name`: the local ModelScope cache is tried first with no network at all,
  so a model downloaded once resolves offline; otherwise `modelscope.snapshot_download` fetches
  it. Before that download the endpoint is probed with a short timeout: modelscope retries a
  failed listing for ~20 s when DNS fails and for minutes when packets are dropped, and an
  evaluation run should say "hub unreachable" in seconds instead.

Every failure is a `ModelResolveError` with one line naming what was wrong and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MODELSCOPE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEFAULT_MODELSCOPE_ENDPOINT = "https://modelscope.cn"
PROBE_TIMEOUT_S = 10.0
ALLOWED = "a local directory with config.json, a ModelScope id (org/name) or builtin:<name>"

# Bounds for modelscope's own retries, used only when the probe found the hub reachable (so a
# flaky link mid-download still fails in well under a minute per request). modelscope reads these
# at import time; setdefault leaves a user's own settings alone. Names are modelscope-hub >= 0.4's.
_MODELSCOPE_ENV_BOUNDS = {
    "MODELSCOPE_API_MAX_RETRIES": "2",
    "MODELSCOPE_API_CONNECT_TIMEOUT": "10",
    "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "2",
    "MODELSCOPE_REPO_TREE_PAGE_RETRY_MAX_DELAY_SECONDS": "2",
    "MODELSCOPE_DOWNLOAD_MAX_RETRIES": "2",
    "MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS": "5",
}


class ModelResolveError(ValueError):
    """The model cannot be found or fetched; one line saying what and what is allowed."""


@dataclass
class ResolvedModel:
    path: Path
    id: str
    revision: str | None
    source: Literal["local", "modelscope", "builtin"]


def resolve(model_cfg: Any) -> ResolvedModel:
    """`model_cfg` is a `config.ModelConfig` (anything with `.id` and `.revision`)."""
    mid: str = model_cfg.id.strip()
    revision: str | None = getattr(model_cfg, "revision", None)
    if mid.startswith("builtin:"):
        return _resolve_builtin(mid)
    path = Path(mid).expanduser()
    if path.exists() or _looks_like_path(mid):
        return _resolve_local(mid, path)
    if MODELSCOPE_ID.match(mid):
        return _resolve_modelscope(mid, revision)
    raise ModelResolveError(f"model.id {mid!r} is not a local directory, a ModelScope id or a builtin; allowed: {ALLOWED}")


def _looks_like_path(mid: str) -> bool:
    return mid.startswith(("/", "./", "../", "~", ".\\")) or mid in (".", "..") or mid.count("/") > 1


def _resolve_builtin(mid: str) -> ResolvedModel:
    from . import builtin_models

    name = mid.split(":", 1)[1]
    if name not in builtin_models.BUILTIN_NAMES:
        raise ModelResolveError(
            f"model.id {mid!r}: unknown built-in model; allowed: "
            + ", ".join(f"builtin:{n}" for n in builtin_models.BUILTIN_NAMES)
        )
    path = builtin_models.ensure(name)
    return ResolvedModel(path, mid, f"recipe-v{builtin_models.RECIPE_VERSION}", "builtin")


def _resolve_local(mid: str, path: Path) -> ResolvedModel:
    if not path.exists():
        raise ModelResolveError(f"model.id {mid!r}: no such directory {path.resolve()}; allowed: {ALLOWED}")
    if not path.is_dir():
        raise ModelResolveError(f"model.id {mid!r}: {path.resolve()} is a file; expected a model directory with config.json")
    if not (path / "config.json").is_file():
        raise ModelResolveError(
            f"model.id {mid!r}: {path.resolve()} has no config.json; expected a Hugging Face-format model directory"
        )
    return ResolvedModel(path.resolve(), mid, None, "local")


# --------------------------------------------------------------------------- ModelScope


def modelscope_endpoint() -> str:
    return (os.environ.get("MODELSCOPE_ENDPOINT") or DEFAULT_MODELSCOPE_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("ASCENDEVAL_OFFLINE", "MODELSCOPE_OFFLINE"))


def _import_modelscope():
    for key, value in _MODELSCOPE_ENV_BOUNDS.items():
        os.environ.setdefault(key, value)
    try:
        from modelscope import snapshot_download
    except ImportError as e:  # pragma: no cover - modelscope is a declared dependency
        raise ModelResolveError(f"ModelScope id needs the modelscope package (pip install modelscope): {e}") from None
    return snapshot_download


def modelscope_cache_dir() -> str | None:
    """MODELSCOPE_CACHE read at each call (None: modelscope's default, ~/.cache/modelscope).

    Passed explicitly because modelscope caches its default config (and so the cache path) for
    the life of the process at first use.
    """
    return os.environ.get("MODELSCOPE_CACHE") or None


def _cached_snapshot(mid: str, revision: str | None) -> Path | None:
    """The locally cached snapshot (modelscope's own cache lookup, no network), or None."""
    snapshot_download = _import_modelscope()
    try:
        found = Path(snapshot_download(mid, revision=revision, cache_dir=modelscope_cache_dir(), local_files_only=True))
    except Exception:  # modelscope raises its CacheNotFound (or ValueError in older versions)
        return None
    return found if (found / "config.json").is_file() else None


def probe_endpoint(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `url` answers any HTTP status within `timeout_s`, else a one-line reason.

    Runs in a daemon thread so a hanging DNS lookup (which no socket timeout covers) is also bounded.
    """
    import httpx

    result: list[str | None] = []

    def _probe() -> None:
        try:
            # Any HTTP answer (even 404) means the hub is reachable; proxies from the env are honoured.
            httpx.head(url, timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), follow_redirects=False)
            result.append(None)
        except Exception as e:  # noqa: BLE001 - every failure is "unreachable", with its reason
            result.append(f"{type(e).__name__}: {_one_line(str(e)) or 'no detail'}")

    t = threading.Thread(target=_probe, daemon=True, name="ascendeval-hub-probe")
    t.start()
    t.join(timeout_s + 1)
    if not result:
        return f"no answer within {timeout_s:.0f} s"
    return result[0]


def _resolve_modelscope(mid: str, revision: str | None) -> ResolvedModel:
    cached = _cached_snapshot(mid, revision)
    if cached is not None:
        return ResolvedModel(cached.resolve(), mid, revision, "modelscope")
    rev = f"@{revision}" if revision else ""
    if _offline():
        raise ModelResolveError(
            f"model.id {mid!r}{rev}: not in the local ModelScope cache and offline mode is on (ASCENDEVAL_OFFLINE/MODELSCOPE_OFFLINE); "
            "download it first or give a local directory"
        )
    endpoint = modelscope_endpoint()
    why = probe_endpoint(endpoint)
    if why is not None:
        raise ModelResolveError(
            f"model.id {mid!r}{rev}: not in the local ModelScope cache and {endpoint} is unreachable ({why}); "
            "download it on a connected machine or give a local directory"
        )
    snapshot_download = _import_modelscope()
    try:
        path = Path(snapshot_download(mid, revision=revision, cache_dir=modelscope_cache_dir()))
    except Exception as e:  # noqa: BLE001 - modelscope's error classes vary between versions
        raise ModelResolveError(f"model.id {mid!r}{rev}: ModelScope download failed: {type(e).__name__}: {_one_line(str(e))}") from None
    if not (path / "config.json").is_file():
        raise ModelResolveError(f"model.id {mid!r}{rev}: downloaded to {path} but it has no config.json (not a transformers model?)")
    return ResolvedModel(path.resolve(), mid, revision, "modelscope")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- model card facts

_DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8",
                "U8": "uint8", "I32": "int32", "I64": "int64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: 8-byte little-endian length, then JSON."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(n))


def model_card_facts(path: Path | str) -> dict[str, Any]:
    """Architecture facts for the report, read from config.json and safetensors headers only.

    Parameter count sums the stored tensors' shapes (no weights are loaded): tied embeddings are
    stored once, so this matches the count model hubs publish (Qwen2-0.5B: ~494 M).
    """
    path = Path(path)
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    text_cfg = cfg.get("text_config") or cfg  # multimodal configs nest the LM's config
    params = 0
    bytes_by_dtype: Counter[str] = Counter()
    files = sorted(path.glob("*.safetensors"))
    for f in files:
        for key, meta in safetensors_header(f).items():
            if key == "__metadata__":
                continue
            n = 1
            for d in meta["shape"]:
                n *= d
            params += n
            start, end = meta["data_offsets"]
            bytes_by_dtype[meta["dtype"]] += end - start
    weight_dtype = _DTYPE_NAMES.get(bytes_by_dtype.most_common(1)[0][0], bytes_by_dtype.most_common(1)[0][0]) if bytes_by_dtype else None
    heads = text_cfg.get("num_attention_heads")
    hidden = text_cfg.get("hidden_size")
    rope = text_cfg.get("rope_parameters") or {}
    return {
        "architecture": (cfg.get("architectures") or [None])[0],
        "model_type": cfg.get("model_type"),
        "num_layers": text_cfg.get("num_hidden_layers"),
        "hidden_size": hidden,
        "intermediate_size": text_cfg.get("intermediate_size"),
        "num_attention_heads": heads,
        "num_key_value_heads": text_cfg.get("num_key_value_heads", heads),
        "head_dim": text_cfg.get("head_dim") or (hidden // heads if hidden and heads else None),
        "vocab_size": text_cfg.get("vocab_size"),
        "max_context": text_cfg.get("max_position_embeddings"),
        "rope_theta": text_cfg.get("rope_theta", rope.get("rope_theta")),
        "tie_word_embeddings": cfg.get("tie_word_embeddings", text_cfg.get("tie_word_embeddings")),
        "config_dtype": cfg.get("torch_dtype") or cfg.get("dtype"),
        "weight_dtype": weight_dtype,
        "param_count": params if files else None,
        "weight_bytes": sum(bytes_by_dtype.values()) if files else None,
        "safetensors_files": len(files),
        "quantization": (cfg.get("quantization_config") or {}).get("quant_method"),
        # what a reader downloads: the folder's own files (not hidden ones, not sub-folders)
        "model_files": [{"name": f.name, "bytes": f.stat().st_size} for f in sorted(path.iterdir())
                        if f.is_file() and not f.name.startswith(".")],
    }
