"""The performance section's set-up: the plan (model facts, reduced counts for large models) and
the one offline engine the offline measurements share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ... import models
from ...context import SectionRun, SectionSkipped
from ...engines import Engine, Sampling
from ...token_prompts import TokenPrompts


@dataclass
class Plan:
    """The section's effective counts (params, reduced for big models) and model facts."""

    conf: Any  # PerformanceConfig with reductions applied
    reduced: bool
    num_params: int | None
    model_facts: dict[str, Any]

    def table(self) -> pd.DataFrame:
        rows = [("reduced counts", self.reduced), ("parameters", self.num_params)]
        rows += [(k, v) for k, v in self.model_facts.items()]
        return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")


def _dtype_bytes(dtype: str) -> int | None:
    return {"float32": 4, "float16": 2, "bfloat16": 2, "fp32": 4, "fp16": 2, "bf16": 2}.get(dtype)


def model_facts(model_dir: str | Path, run_dtype: str) -> dict[str, Any]:
    """The model's facts as the card lists them (`models.model_card_facts`: config.json and the
    safetensors headers, no load), the shapes the roofline needs, and what the run's dtype makes
    of them: weights and KV cache bytes per token at that dtype."""
    card = models.model_card_facts(model_dir) if (Path(model_dir) / "config.json").is_file() else {}
    facts: dict[str, Any] = {k: card.get(k) for k in (
        "num_layers", "hidden_size", "num_key_value_heads", "head_dim", "vocab_size", "config_dtype", "param_count",
        "weight_bytes")}
    layers, kv_heads, head_dim, n = (facts["num_layers"], facts["num_key_value_heads"], facts["head_dim"],
                                     facts["param_count"])
    dtype = run_dtype if run_dtype != "auto" else str(facts["config_dtype"] or "float32")
    b = _dtype_bytes(dtype.replace("torch.", ""))
    facts["run_dtype"] = dtype
    facts["weights_bytes"] = n * b if n and b else None
    facts["kv_bytes_per_token"] = (2 * layers * kv_heads * head_dim * b) if all((layers, kv_heads, head_dim, b)) else None
    return facts


def plan(run: SectionRun) -> Plan:
    """Apply `reduced` counts when the model is larger than `reduced.above_params`."""
    conf = run.conf
    facts = model_facts(run.model().path, run.cfg.model.dtype)
    n = facts.get("param_count")
    r = conf.reduced
    reduced = bool(r.above_params and n and n > r.above_params)
    if reduced:
        conf = conf.model_copy(deep=True)
        lat, thr, spl, srv = conf.latency, conf.throughput, conf.split, conf.serving
        for obj, key, val in ((lat, "iters", r.iters), (lat, "warmup_iters", r.warmup_iters),
                              (lat, "e2e_output_lens", r.e2e_output_lens), (lat, "e2e_iters", r.e2e_iters),
                              (thr, "num_prompts", r.throughput_num_prompts), (spl, "batch_sizes", r.split_batch_sizes),
                              (spl, "prefill_input_len", r.prefill_input_len), (spl, "decode_output_len", r.decode_output_len),
                              (srv, "num_prompts", r.serving_num_prompts), (srv, "request_rates", r.request_rates),
                              (srv, "concurrencies", r.concurrencies), (srv, "repeats", r.serving_repeats),
                              (conf.graph, "enabled", r.graph)):
            if val is not None:
                setattr(obj, key, val)
    run.add("plan", {"reduced": reduced, "effective": conf.model_dump(mode="json"), "model": facts})
    return Plan(conf, reduced, n, facts)


@dataclass
class PerfEngine:
    """The engine all offline measurements share (prefix caching off, see `open_engine`)."""

    engine: Engine
    info: dict[str, Any]
    max_model_len: int | None

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.info.items()), columns=["item", "value"]).set_index("item")


def _engine_overrides(run: SectionRun, **extra: Any) -> dict[str, Any]:
    # Prefix caching OFF for offline measurements (as `vllm bench latency` does): the timed
    # iterations repeat the same prompts, and with caching on every iteration after the first
    # would skip prefill, so latency and prefill speed would measure cache hits, not the model.
    return {"enable_prefix_caching": False, **extra} if run.cfg.target.engine == "vllm" else dict(extra)


def open_engine(run: SectionRun) -> PerfEngine:
    if run.cfg.target.engine == "openai":
        raise SectionSkipped("offline measurements need a local engine (vllm or hf); target engine is openai",
                             zh="离线测量需要本地引擎（vllm 或 hf）；被测目标的引擎为 openai")
    eng = run.engine("performance", **_engine_overrides(run))
    info = eng.info()
    mml = info.get("max_model_len") or run.cfg.model.max_model_len
    if mml is None and hasattr(eng, "model"):
        mml = getattr(getattr(eng.model, "config", None), "max_position_embeddings", None)
    run.add("engine", {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool)) or v is None})
    return PerfEngine(eng, info, mml)


def close_engine(pe: PerfEngine | None) -> None:
    if pe is not None:
        pe.engine.close()


def _need(run: SectionRun, pe: PerfEngine | None) -> PerfEngine:
    return run.needs("engine", pe)


def _check_len(pe: PerfEngine, what: str, input_len: int, output_len: int) -> None:
    if pe.max_model_len and input_len + output_len > pe.max_model_len:
        raise ValueError(f"performance.{what}: input {input_len} + output {output_len} tokens = "
                         f"{input_len + output_len} exceeds max_model_len {pe.max_model_len}; "
                         f"lower the lengths or raise model.max_model_len")


def token_prompts(tokenizer: Any, n: int, length: int, seed: int) -> list[list[int]]:
    """`n` random token-id prompts of exactly `length` tokens (token_prompts.TokenPrompts)."""
    return TokenPrompts(tokenizer, seed).many(n, length)


def _timed_generate(eng: Engine, prompts: list[list[int]], sampling: Sampling) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    gens = eng.generate(prompts, sampling)
    return time.perf_counter() - t0, gens


def _fixed(max_tokens: int, seed: int = 0) -> Sampling:
    # vllm bench latency/throughput: temperature 1.0, top_p 1.0, ignore_eos -> exactly max_tokens
    return Sampling(max_tokens=max_tokens, temperature=1.0, top_p=1.0, ignore_eos=True, seed=seed)

