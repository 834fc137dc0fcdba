"""Engines behind one interface (`Engine`): hf (transformers), vllm (offline LLM), openai (HTTP).

`create(cfg, model_path)` builds the engine the params ask for; keyword overrides change one
setting for one measurement (e.g. `enforce_eager=False` for the graph-mode run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import Engine, Generation, Sampling, Timing

ENGINE_NAMES = ("hf", "vllm", "openai")

__all__ = ["Engine", "Generation", "Sampling", "Timing", "ENGINE_NAMES", "create"]


def create(cfg: Any, model_path: str | Path | None = None, *, engine: str | None = None,
           device: str | None = None, dtype: str | None = None, base_url: str | None = None,
           **overrides: Any) -> Engine:
    """Build an engine from a RunConfig.

    Args:
        cfg: the run's `RunConfig`.
        model_path: resolved model directory (not needed for `openai`).
        engine / device / dtype: override the params' target for this engine only.
        base_url: server URL for the `openai` engine (default: `cfg.server.url`).
        overrides: extra vllm.LLM keyword arguments (vllm) or from_pretrained kwargs (hf).
    """
    name = engine or cfg.target.engine
    if name in ("hf", "vllm"):
        # `target.env` is for engines as well as servers; an in-process engine reads it from this
        # process's environment (vLLM reads its variables when they are used, not at import).
        # On npu this also makes vLLM spawn its workers (device.engine_process_env says why).
        from ..device import engine_process_env

        os.environ.update(engine_process_env(device or cfg.target.device, cfg.target.env))
    if name == "hf":
        from .hf_engine import HFEngine

        return HFEngine(model_path, device=device or cfg.target.device, dtype=dtype or cfg.model.dtype,
                        trust_remote_code=cfg.model.trust_remote_code, **overrides)
    if name == "vllm":
        from .vllm_engine import VLLMEngine, engine_kwargs

        kw = engine_kwargs(cfg.target, cfg.model, **overrides)
        if dtype:
            kw["dtype"] = dtype
        return VLLMEngine(model_path, **kw)
    if name == "openai":
        from .openai_engine import OpenAIEngine

        url = base_url or cfg.server.url
        if not url:
            raise ValueError("engine 'openai' needs a server URL (server.url in params, or a started server)")
        return OpenAIEngine(url, model=cfg.server.served_model_name, api_key=cfg.server.api_key,
                            vllm_extensions=cfg.server.kind == "vllm",
                            tokenizer_path=str(model_path) if model_path else None, **overrides)
    raise ValueError(f"unknown engine {name!r}; allowed: {', '.join(ENGINE_NAMES)}")
