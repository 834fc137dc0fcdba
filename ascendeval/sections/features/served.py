"""Features of a running deployment, measured over its API (`target.engine: openai`): what the
server exposes to a client and to Prometheus, with no engine of our own.

* Prefix caching: prompts sharing a long prefix vs prompts of the same length with distinct
  prefixes, one at a time (TTFT per request from the streaming client), with the server's own
  evidence: its `vllm:prefix_cache_queries` / `vllm:prefix_cache_hits` counters on /metrics and
  the `usage.prompt_tokens_details.cached_tokens` it reports per request (vLLM with
  `--enable-prompt-tokens-details`).
* Speculative decoding: the server's acceptance from its `vllm:spec_decode_*` counters over a
  workload of copy-friendly prompts (vLLM's definitions, as the offline A/B uses).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import loadgen
from ...context import SectionRun, SectionSkipped
from ...metrics import RequestResult
from ...output_guard import OutputGuard
from ...token_prompts import TokenPrompts
from .common import (
    Table,
    _sum_by_name,
    counter_delta,
    keep_served,
    safe_ratio,
    scrape_metrics,
)
from .prefix_cache import prefix_workload
from .speculative import acceptance, copy_prompts


def _need_served_target(run: SectionRun, offline_step: str) -> None:
    if run.cfg.target.engine != "openai":
        raise SectionSkipped(
            f"the target is not a running deployment (target engine {run.cfg.target.engine}): the offline "
            f"engine measures this (step '{offline_step}')",
            zh=f"被测目标不是已运行的服务化部署（引擎为 {run.cfg.target.engine}）：由离线引擎测量（步骤 '{offline_step}'）")


def _endpoint(run: SectionRun, base_url: str) -> loadgen.Endpoint:
    name = loadgen.served_model(base_url, run.cfg.server.served_model_name, run.cfg.server.api_key)
    # exact output lengths (ignore_eos) only where the server is declared vLLM: others may refuse it
    return loadgen.Endpoint(base_url, name, api="completions", api_key=run.cfg.server.api_key, timeout_s=600,
                            ignore_eos=run.cfg.server.kind == "vllm")


def _one_at_a_time(ep: loadgen.Endpoint, prompts: list[Any], max_tokens: int) -> list[RequestResult]:
    """Each prompt alone (TTFT without queueing); every request must succeed."""
    lr = loadgen.run_load(ep, prompts, max_tokens, loadgen.LoadSpec(max_concurrency=1), warmup_requests=0)
    failed = [r for r in lr.results if not r.success]
    if failed:
        raise RuntimeError(f"{len(failed)}/{len(lr.results)} requests to {ep.url} failed: {failed[0].error}")
    return lr.results


def _counters(base_url: str) -> dict[str, Any] | None:
    """The server's Prometheus counters; None when it serves no /metrics (not every server does)."""
    try:
        return scrape_metrics(base_url)
    except Exception:  # noqa: BLE001 - no /metrics is a finding (counters not reported), not a failure
        return None


def _prefix_arm(results: list[RequestResult], deltas: dict[str, Any] | None) -> dict[str, Any]:
    queries = _sum_by_name(deltas, "vllm:prefix_cache_queries") if deltas is not None else None
    hits = _sum_by_name(deltas, "vllm:prefix_cache_hits") if deltas is not None else None
    ttfts = [r.ttft_s * 1000 for r in results if r.ttft_s is not None]
    cached = [r.cached_tokens for r in results]
    return {"mean_ttft_ms": float(np.mean(ttfts)) if ttfts else None,
            "median_ttft_ms": float(np.median(ttfts)) if ttfts else None,
            "prefix_cache_queries": queries, "prefix_cache_hits": hits,
            "prefix_cache_hit_rate": safe_ratio(hits, queries),
            # None unless the server reported it for every request (a partial sum would understate)
            "cached_tokens": int(sum(cached)) if all(c is not None for c in cached) else None}


def prefix_caching_served(run: SectionRun, guard: OutputGuard | None = None) -> Table:
    """Shared vs distinct prefixes through the deployment's API; see the module docstring."""
    c = run.conf
    if not c.prefix_caching:
        raise SectionSkipped("prefix_caching: false in params", zh="参数文件中设置了 prefix_caching: false")
    _need_served_target(run, "prefix_caching")
    from transformers import AutoTokenizer

    # exact-length token prompts need the model's tokenizer: the run's local files of the served model
    tok = AutoTokenizer.from_pretrained(run.model().path, trust_remote_code=run.cfg.model.trust_remote_code)
    tokens = TokenPrompts(tok, seed=0)
    max_len = run.cfg.model.max_model_len or c.prefix_prompt_len + c.prefix_output_len
    plen = min(c.prefix_prompt_len, max_len - c.prefix_output_len)
    if plen < 2:
        raise SectionSkipped(f"max_model_len {max_len} leaves no room for a prompt",
                             zh=f"max_model_len 为 {max_len}，没有留给提示词的空间")
    arms: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    with run.served("prefix_caching_served") as base:
        ep = _endpoint(run, base)
        _one_at_a_time(ep, [tokens.make(plen)], 1)  # warm-up: the first request pays for connections
        for name, shared in (("distinct_prefix", False), ("shared_prefix", True)):
            prompts, prime = prefix_workload(tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, shared)
            if prime is not None:  # the first user of a shared prefix pays for it; time the ones after
                _one_at_a_time(ep, [prime], 1)
            before = _counters(base)
            results = _one_at_a_time(ep, prompts, c.prefix_output_len)
            after = _counters(base)
            deltas = counter_delta(before, after, "vllm:prefix_cache") if before is not None and after else None
            arms[name] = _prefix_arm(results, deltas)
            keep_served(run, guard, "prefix_caching_served", results, prompts, ignore_eos=ep.ignore_eos)
            rows += [{**r.row(), "arm": name} for r in results]
    run.save_rows("prefix_served_requests", rows)
    on, miss = arms["shared_prefix"], arms["distinct_prefix"]
    # the speed-up is only claimed where the server's own figures show the hits that explain it
    evidence = [(on["prefix_cache_hits"], miss["prefix_cache_hits"]), (on["cached_tokens"], miss["cached_tokens"])]
    known = [(a, b) for a, b in evidence if a is not None and b is not None]
    summary = {**arms, "prompt_len": plen,
               "shared_prefix_len": max(1, min(plen - 1, round(plen * c.prefix_shared_ratio))),
               "num_prompts": c.prefix_num_prompts,
               "ttft_speedup": safe_ratio(miss["mean_ttft_ms"], on["mean_ttft_ms"]),
               "speedup_backed_by_counters": bool(known) and all(a > 0 and b < a for a, b in known)}
    run.add("prefix_caching_served", summary)
    return Table("prefix_caching_served", [{"arm": k, **v} for k, v in arms.items()], summary)


def speculative_server(run: SectionRun, guard: OutputGuard | None = None) -> Table:
    """The deployment's speculative-decoding acceptance from its own counters, over copy-friendly
    prompts sent one at a time (speculation is a latency feature)."""
    c = run.conf
    if not c.speculative:
        raise SectionSkipped("speculative: false in params", zh="参数文件中设置了 speculative: false")
    _need_served_target(run, "speculative")
    with run.served("speculative_server") as base:
        before = _counters(base)
        if before is None:
            raise SectionSkipped(f"{base} serves no Prometheus /metrics: its acceptance is not observable",
                                 zh=f"{base} 未提供 Prometheus /metrics：无法观测投机解码接受率")
        ep = _endpoint(run, base)
        prompts = copy_prompts(c.spec_served_num_prompts)
        results = _one_at_a_time(ep, prompts, c.spec_output_len)
        after = _counters(base) or {}
    deltas = counter_delta(before, after, "vllm:spec_decode")
    if not deltas:
        raise SectionSkipped("the server runs no speculative decoding (no vllm:spec_decode_* counters on /metrics)",
                             zh="该服务未启用投机解码（/metrics 中没有 vllm:spec_decode_* 计数器）")
    keep_served(run, guard, "speculative_server", results, prompts, ignore_eos=ep.ignore_eos)
    run.save_rows("speculative_server_requests", [r.row() for r in results])
    tpots = [r.tpot_s * 1000 for r in results if r.tpot_s is not None]
    summary = {**acceptance(deltas), "num_prompts": len(prompts),
               "mean_tpot_ms": float(np.mean(tpots)) if tpots else None}
    run.add("speculative_server", summary)
    return Table("speculative_server", [summary], summary)
