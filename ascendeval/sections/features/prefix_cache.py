"""Prefix caching: prompts sharing a long prefix vs prompts of the same length with distinct
prefixes, on one engine with caching on (TTFT / throughput per arm, speed-up, the engine's own
`num_cached_tokens` and `vllm:prefix_cache_*` counters), and the same workload with caching off."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...context import SectionRun, SectionSkipped
from ...token_prompts import TokenPrompts
from .common import (
    Main,
    Table,
    _need,
    _sum_by_name,
    counter_delta,
    request_timing,
    safe_ratio,
)


def _arm(main: Main, name: str, prompts: list[list[int]], out_len: int, prime: list[int] | None,
         figure: str = "prefix_caching") -> dict[str, Any]:
    """One arm: prompts one at a time (own TTFT), then the same prompts again as one batch
    (throughput); counters are deltas over the sequential pass only, so hits are this arm's."""
    if prime is not None:  # the first user of a shared prefix pays for it; time the ones after
        main.generate([prime], 1)
    before = main.engine.metrics()
    rows = []
    for p in prompts:
        outs, wall = main.generate([p], out_len, figure=figure)
        rows.append({"arm": name, **request_timing(outs[0]), "e2e_ms": wall * 1000})
    after = main.engine.metrics()
    deltas = counter_delta(before, after, "vllm:prefix_cache")
    queries = _sum_by_name(deltas, "vllm:prefix_cache_queries")
    hits = _sum_by_name(deltas, "vllm:prefix_cache_hits")
    # throughput: the batch pass sees the cache state the sequential pass left (warm for both arms
    # equally would hide the effect), so use fresh prompts of the same shape: see prefix_caching()
    return {"rows": rows, "prefix_cache_queries": queries, "prefix_cache_hits": hits,
            "prefix_cache_hit_rate": safe_ratio(hits, queries),
            "num_cached_tokens": int(sum(r["num_cached_tokens"] or 0 for r in rows)),
            "mean_ttft_ms": float(np.mean([r["ttft_ms"] for r in rows if r["ttft_ms"] is not None])),
            "mean_prefill_ms": float(np.mean([r["prefill_ms"] for r in rows if r["prefill_ms"] is not None])),
            "mean_e2e_ms": float(np.mean([r["e2e_ms"] for r in rows]))}


def _batch_throughput(main: Main, prompts: list[list[int]], out_len: int, prime: list[int] | None,
                      figure: str = "prefix_caching") -> dict[str, Any]:
    if prime is not None:
        main.generate([prime], 1)
    before = main.engine.metrics()
    outs, wall = main.generate(prompts, out_len, figure=figure)
    deltas = counter_delta(before, main.engine.metrics(), "vllm:prefix_cache")
    n_in = sum(len(p) for p in prompts)
    n_out = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"batch_elapsed_s": wall, "batch_total_tok_per_s": (n_in + n_out) / wall,
            "batch_output_tok_per_s": n_out / wall, "batch_req_per_s": len(prompts) / wall,
            "batch_prefix_cache_hits": _sum_by_name(deltas, "vllm:prefix_cache_hits"),
            "batch_num_cached_tokens": int(sum(getattr(o, "num_cached_tokens", 0) or 0 for o in outs))}


def prefix_workload(tokens: TokenPrompts, n: int, prompt_len: int, ratio: float, shared: bool
                    ) -> tuple[list[list[int]], list[int] | None]:
    """n prompts of prompt_len tokens: a prefix of round(prompt_len*ratio) tokens shared by all
    (shared=True; also returned as the priming prompt) or drawn per prompt (shared=False)."""
    plen = max(1, min(prompt_len - 1, round(prompt_len * ratio)))
    common = tokens.make(plen)
    prompts = [(common if shared else tokens.make(plen)) + tokens.make(prompt_len - plen) for _ in range(n)]
    return prompts, (common + tokens.make(prompt_len - plen) if shared else None)


def prefix_caching(run: SectionRun, main: Main | None) -> Table:
    """Shared-prefix arm vs distinct-prefix arm (same lengths) on the caching engine, and
    optionally the shared arm on an engine with caching off."""
    c = run.conf
    if not c.prefix_caching:
        raise SectionSkipped("prefix_caching: false in params", zh="参数文件中设置了 prefix_caching: false")
    m = _need(main)
    plen = min(c.prefix_prompt_len, (m.info["max_model_len"] or c.prefix_prompt_len) - c.prefix_output_len)
    if plen < 2:
        raise SectionSkipped(f"max_model_len {m.info['max_model_len']} leaves no room for a prompt",
                             zh=f"max_model_len 为 {m.info['max_model_len']}，没有留给提示词的空间")
    arms: dict[str, dict[str, Any]] = {}
    for name, shared in (("distinct_prefix", False), ("shared_prefix", True)):
        prompts, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, shared)
        arms[name] = _arm(m, name, prompts, c.prefix_output_len, prime)
        batch, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, shared)
        arms[name].update(_batch_throughput(m, batch, c.prefix_output_len, prime))
    rows = [r for a in arms.values() for r in a["rows"]]
    run.save_rows("prefix_requests", rows)
    summary = {name: {k: v for k, v in a.items() if k != "rows"} for name, a in arms.items()}
    on, miss = summary["shared_prefix"], summary["distinct_prefix"]
    # The speed-up is only claimed where the counters show the hits that explain it.
    backed = bool((on["prefix_cache_hits"] or 0) > 0 and on["num_cached_tokens"] > 0
                  and (miss["num_cached_tokens"] or 0) < on["num_cached_tokens"])
    summary.update({
        "prompt_len": plen, "shared_prefix_len": max(1, min(plen - 1, round(plen * c.prefix_shared_ratio))),
        "num_prompts": c.prefix_num_prompts,
        "ttft_speedup": safe_ratio(miss["mean_ttft_ms"], on["mean_ttft_ms"]),
        "prefill_speedup": safe_ratio(miss["mean_prefill_ms"], on["mean_prefill_ms"]),
        "throughput_speedup": safe_ratio(on["batch_total_tok_per_s"], miss["batch_total_tok_per_s"]),
        "speedup_backed_by_counters": backed,
    })
    run.add("prefix_caching", summary)
    table_rows = [_prefix_row(k, v) for k, v in summary.items() if isinstance(v, dict)]
    return Table("prefix_caching", table_rows, summary)


def _prefix_row(arm: str, a: dict[str, Any]) -> dict[str, Any]:
    return {"arm": arm, **{k: a[k] for k in ("mean_ttft_ms", "mean_prefill_ms", "prefix_cache_queries",
                                             "prefix_cache_hits", "prefix_cache_hit_rate", "num_cached_tokens",
                                             "batch_total_tok_per_s", "batch_num_cached_tokens")}}


def prefix_caching_off(run: SectionRun, main: Main | None, on: Table | None) -> Table:
    """The shared-prefix arm again on an engine with caching off. Runs after the main engine is
    closed (one vLLM engine at a time); `main` only lends its tokenizer and lengths."""
    c = run.conf
    if not (c.prefix_caching and c.prefix_off_engine):
        raise SectionSkipped("prefix_caching / prefix_off_engine: false in params",
                             zh="参数文件中设置了 prefix_caching / prefix_off_engine: false")
    m = _need(main)
    if on is None:
        raise SectionSkipped("the caching-on arms did not run (see step 'prefix_caching')",
                             zh="开启前缀缓存的各组测量未运行（见步骤 'prefix_caching'）")
    plen = on.summary["prompt_len"]
    off = run.engine("features-prefix-off", enable_prefix_caching=False)
    try:
        m_off = Main(off, {}, m.tokens, m.guard)
        prompts, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, True)
        arm = _arm(m_off, "shared_prefix_caching_off", prompts, c.prefix_output_len, prime, "prefix_caching_off")
        batch, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, True)
        arm.update(_batch_throughput(m_off, batch, c.prefix_output_len, prime, "prefix_caching_off"))
    finally:
        off.close()
    run.save_rows("prefix_off_requests", arm.pop("rows"))
    summary = {"shared_prefix_caching_off": arm,
               "ttft_speedup_vs_caching_off": safe_ratio(arm["mean_ttft_ms"], on.summary["shared_prefix"]["mean_ttft_ms"])}
    run.add("prefix_caching_off", summary)
    return Table("prefix_caching_off", [_prefix_row("shared_prefix_caching_off", arm)], summary)

