"""KV capacity: the KV cache's blocks as concurrent sequences at a length, and the largest batch
that actually runs."""

from __future__ import annotations

import math

from ... import device as device_mod
from ...context import SectionRun, SectionSkipped
from .common import Main, Table, _need, request_timing
from .long_context import context_lengths


def max_concurrency(num_blocks: int, block_size: int, seq_len: int) -> int:
    """Sequences of seq_len tokens the KV cache holds at once (whole blocks per sequence, as the
    block manager allocates them)."""
    return num_blocks // math.ceil(seq_len / block_size)


def capacity(run: SectionRun, main: Main | None) -> Table:
    """KV capacity at each length from the engine's own block count, then the largest batch
    actually run at that length (capped by max_num_seqs and capacity_max_batch), with preemptions
    (a batch that did not fit is preempted, not failed) and the process memory it used."""
    c = run.conf
    if not c.capacity:
        raise SectionSkipped("capacity: false in params", zh="参数文件中设置了 capacity: false")
    m = _need(main)
    blocks, bs = m.info.get("kv_cache_blocks"), m.info.get("block_size")
    if not blocks or not bs:
        raise SectionSkipped("the engine reports no KV block count", zh="引擎未报告 KV 块数量")
    lengths, dropped = context_lengths(c.capacity_lengths, m.info["max_model_len"], 0, m.info.get("kv_cache_tokens"))
    rows = []
    for n in lengths:
        fit = max_concurrency(blocks, bs, n)
        batch = min(fit, m.info.get("max_num_seqs") or fit, c.capacity_max_batch)
        in_len = max(n - c.capacity_output_len, 1)
        before = device_mod.process_tree_rss_bytes()
        outs, wall = m.generate([m.tokens.make(in_len) for _ in range(batch)], c.capacity_output_len,
                                figure="capacity")
        after = device_mod.process_tree_rss_bytes()
        timings = [request_timing(o) for o in outs]
        done = sum(1 for o in outs if len(o.outputs[0].token_ids) == c.capacity_output_len)
        rows.append({"seq_len": n, "kv_max_concurrent_seqs": fit, "batch_run": batch, "completed": done,
                     # None (not reported by this vLLM) stays None: it is not zero preemptions.
                     "preemptions": None if any(t["preemptions"] is None for t in timings)
                     else int(sum(t["preemptions"] for t in timings)),
                     "kv_fraction_used": batch * math.ceil(n / bs) / blocks, "elapsed_s": wall,
                     "output_tok_per_s": batch * c.capacity_output_len / wall,
                     "rss_after_bytes": after, "rss_delta_bytes": after - before,
                     "batch_limited_by": "kv_cache" if batch == fit else (
                         "max_num_seqs" if batch == m.info.get("max_num_seqs") else "capacity_max_batch")})
    run.save_rows("capacity", rows)
    summary = {"kv_cache_blocks": blocks, "block_size": bs, "kv_cache_tokens": m.info.get("kv_cache_tokens"),
               "kv_cache_memory_bytes": run.cfg.target.kv_cache_memory_bytes,
               "kv_max_concurrency_at_max_model_len": m.info.get("kv_cache_max_concurrency"),
               "points": rows, "dropped_lengths": dropped}
    run.add("capacity", summary)
    return Table("capacity", rows, summary)

