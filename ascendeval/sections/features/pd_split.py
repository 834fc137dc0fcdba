"""Prefill / decode split per request from the engine's own timestamps (`RequestOutput.metrics`),
and real disaggregated prefill: producer and consumer engines joined by a vLLM KV connector."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...context import SectionRun, SectionSkipped
from ...engines import vllm_compat
from ...output_guard import OutputGuard
from ...token_prompts import TokenPrompts
from .common import (
    Main,
    Table,
    _mean,
    _ms,
    _need,
    _sum_by_name,
    counter_delta,
    keep_served,
    request_timing,
    safe_ratio,
    scrape_metrics,
)


def prefill_decode_split(run: SectionRun, main: Main | None) -> Table:
    """Per request, queue / prefill / decode time from the engine's timestamps, across the
    input/output length mixes; requests one at a time and with fresh tokens (no cache hits)."""
    c = run.conf
    if not c.pd_split:
        raise SectionSkipped("pd_split: false in params", zh="参数文件中设置了 pd_split: false")
    m = _need(main)
    limit = m.info["max_model_len"]
    rows, dropped = [], []
    m.generate([m.tokens.make(16)], 2)  # warm-up
    for in_len, out_len in c.pd_mixes:
        if in_len + out_len > limit:
            dropped.append([in_len, out_len])
            continue
        for i in range(c.pd_num_prompts):
            outs, wall = m.generate([m.tokens.make(in_len)], out_len, figure="pd_split")
            r = request_timing(outs[0])
            total = (r["prefill_ms"] or 0) + (r["decode_ms"] or 0)
            rows.append({"mix": f"{in_len}/{out_len}", "input_len": in_len, "output_len": out_len, **r,
                         "prefill_share": safe_ratio(r["prefill_ms"], total), "e2e_ms": wall * 1000})
    if not rows:
        raise SectionSkipped(f"every mix exceeds max_model_len {limit}: {dropped}",
                             zh=f"每种输入/输出长度组合都超过 max_model_len {limit}：{dropped}")
    run.save_rows("pd_split_requests", rows)
    df = pd.DataFrame(rows)
    agg = df.groupby("mix", sort=False).agg(
        input_len=("input_len", "first"), output_len=("output_len", "first"), requests=("mix", "size"),
        mean_queue_ms=("queue_ms", "mean"), mean_prefill_ms=("prefill_ms", "mean"),
        mean_decode_ms=("decode_ms", "mean"), mean_tpot_ms=("tpot_ms", "mean"),
        mean_prefill_share=("prefill_share", "mean"), cached_tokens=("num_cached_tokens", "sum")).reset_index()
    agg["prefill_tok_per_s"] = agg["input_len"] / (agg["mean_prefill_ms"] / 1000)
    summary = {"mixes": agg.to_dict(orient="records"), "dropped_mixes": dropped}
    run.add("pd_split", summary)
    return Table("pd_split", agg.to_dict(orient="records"), summary)


@dataclass
class DisaggReference:
    """The single-instance arm of the disaggregated-prefill comparison, from the main engine."""

    prompts: list[list[int]]
    in_len: int
    single: list[dict[str, Any]]
    tokens: TokenPrompts
    guard: OutputGuard | None = None


def disagg_reference(run: SectionRun, main: Main | None) -> DisaggReference:
    """Single-instance TTFT/TPOT and outputs on the main engine (fresh prompts: no cache hits)."""
    c = run.conf
    if not c.disaggregated:
        raise SectionSkipped("disaggregated: false in params", zh="参数文件中设置了 disaggregated: false")
    m = _need(main)
    in_len = min(c.disagg_input_len, m.info["max_model_len"] - c.disagg_output_len)
    block = m.info.get("block_size") or 1
    if in_len <= block:
        raise SectionSkipped(f"input length {in_len} does not exceed the KV block size {block}: nothing to transfer",
                             zh=f"输入长度 {in_len} 未超过 KV 块大小 {block}：没有需要传输的内容")
    prompts = [m.tokens.make(in_len) for _ in range(c.disagg_num_prompts)]
    single = [request_timing(o) | {"token_ids": list(o.outputs[0].token_ids), "text": o.outputs[0].text}
              for o in (m.generate([p], c.disagg_output_len, figure="disaggregated_prefill")[0][0] for p in prompts)]
    return DisaggReference(prompts, in_len, single, m.tokens, m.guard)


def disaggregated_prefill(run: SectionRun, ref: DisaggReference | None) -> Table:
    """Disaggregated prefill as it is deployed: a prefill server (kv_producer) and a decode
    server (kv_consumer) live at once behind the proxy (`pd_proxy.PDProxy`), every request
    prefilled on P, its KV handed to D through the vLLM KV connector, decoded on D. The same
    prompts go, one at a time, to one ordinary server of the same settings for the baseline.

    TTFT through the proxy = prefill on P + KV transfer + first decode step on D (+ the proxy's
    own hop); the proxy times P's part and D's first token separately. D's external prefix-cache
    counters say how many prompt tokens it loaded instead of computing: 0 means the KV was not
    transferred and the step fails. Outputs are compared with the single instance's offline ones.
    On CPU the connector is vLLM's ExampleConnector (KV in files); on Ascend MooncakeConnectorV1,
    on GPUs NixlConnector (params: features.kv_connector / kv_connector_extra_config)."""
    from ... import loadgen
    from ...pd_proxy import PDProxy

    c = run.conf
    if not c.disaggregated:
        raise SectionSkipped("disaggregated: false in params", zh="参数文件中设置了 disaggregated: false")
    if ref is None:
        raise SectionSkipped("the single-instance reference did not run (see step 'disaggregated_reference')",
                             zh="单实例参考基线未运行（见步骤 'disaggregated_reference'）")
    vllm_compat.check_kv_connector(c.kv_connector)
    prompts, in_len, single = ref.prompts, ref.in_len, ref.single
    warm = [ref.tokens.make(in_len)]  # fresh: a warm-up must not leave KV for a timed prompt
    store = run.run_dir / "kv_store"
    shutil.rmtree(store, ignore_errors=True)
    extra = {"shared_storage_path": str(store), **c.kv_connector_extra_config}
    key = run.cfg.server.api_key

    def kv(role: str) -> dict[str, Any]:
        return {"kv_connector": c.kv_connector, "kv_role": role, "kv_connector_extra_config": extra}

    def endpoint(url: str) -> Any:
        return loadgen.Endpoint(url, loadgen.list_models(url, key)[0], api_key=key, ignore_eos=True)

    def one_at_a_time(url: str, batch: list[list[int]]) -> Any:
        return loadgen.run_load(endpoint(url), batch, c.disagg_output_len, loadgen.LoadSpec(max_concurrency=1),
                                warmup_requests=0)

    # the baseline is a server of its own, started like P and D and measured just before them:
    # the run's shared server has served other steps and started at another time
    with run.served("features-pd-single", fresh=True) as single_url:
        one_at_a_time(single_url, warm)  # warm-up, not timed
        base = one_at_a_time(single_url, prompts)
    try:
        with run.served("features-pd-prefill", kv_transfer_config=kv("kv_producer")) as p_url, \
                run.served("features-pd-decode", kv_transfer_config=kv("kv_consumer")) as d_url:
            proxy = PDProxy(p_url, d_url)
            with proxy as url:
                one_at_a_time(url, warm)  # warm-up through the whole path, before the counters are read
                before = scrape_metrics(d_url)
                disagg = one_at_a_time(url, prompts)
                ext = counter_delta(before, scrape_metrics(d_url), "vllm:external_prefix_cache")
    finally:
        stored_bytes = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) if store.exists() else 0
        shutil.rmtree(store, ignore_errors=True)
    keep_served(run, ref.guard, "disaggregated_prefill", base.results + disagg.results, prompts)
    parts = proxy.timings[-len(prompts):]  # the warm-up came first
    rows = []
    for i, (s, b, d, part) in enumerate(zip(single, base.results, disagg.results, parts)):
        rows.append({"prompt": i, "input_len": in_len,
                     "single_ttft_ms": _ms(b.ttft_s), "single_tpot_ms": _ms(b.tpot_s),
                     "disagg_ttft_ms": _ms(d.ttft_s), "disagg_tpot_ms": _ms(d.tpot_s),
                     "prefill_instance_ms": part.get("prefill_ms"),
                     "decode_first_token_ms": part.get("decode_first_token_ms"),
                     "kv_transfer_params_returned": part.get("kv_transfer_params_returned"),
                     "single_engine_ttft_ms": s["ttft_ms"],
                     "identical": part.get("text") == s["text"] if part.get("text") is not None else None,
                     "error": d.error or b.error or part.get("error")})
    run.save_rows("disaggregated_requests", rows)
    df = pd.DataFrame(rows)
    loaded = _sum_by_name(ext, "vllm:external_prefix_cache_hits")
    summary = {"kv_connector": c.kv_connector, "topology": "prefill server + decode server + proxy",
               "input_len": in_len, "output_len": c.disagg_output_len, "num_prompts": len(rows),
               "kv_store_bytes": stored_bytes,
               "external_prefix_cache_queries": _sum_by_name(ext, "vllm:external_prefix_cache_queries"),
               "external_prefix_cache_hits": loaded,
               "kv_loaded_tokens": int(loaded) if loaded is not None else None,
               "mean_single_ttft_ms": _mean(df, "single_ttft_ms"),
               "mean_disagg_ttft_ms": _mean(df, "disagg_ttft_ms"),
               "mean_prefill_instance_ms": _mean(df, "prefill_instance_ms"),
               "mean_decode_first_token_ms": _mean(df, "decode_first_token_ms"),
               "mean_single_tpot_ms": _mean(df, "single_tpot_ms"),
               "mean_disagg_tpot_ms": _mean(df, "disagg_tpot_ms"),
               "same_as_single_rate": _mean(df, "identical")}
    run.add("disaggregated_prefill", summary)
    if not loaded:
        raise RuntimeError(f"the decode server loaded no KV through {c.kv_connector} (external prefix-cache "
                           "hits 0): the prefill was recomputed, not transferred")
    return Table("disaggregated_prefill", rows, summary)

