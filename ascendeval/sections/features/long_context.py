"""Long-context scaling (TTFT and throughput per context length) with chunked prefill on, and the
same sweep with chunked prefill off."""

from __future__ import annotations

import math
from typing import Any

from ...context import SectionRun, SectionSkipped
from .common import Main, Plot, Table, _need, request_timing, safe_ratio


def context_lengths(requested: list[int], max_model_len: int, out_len: int, kv_tokens: int | None
                    ) -> tuple[list[int], list[int]]:
    """(lengths to run, lengths dropped). The cap is max_model_len - out_len and the KV cache;
    when anything was dropped, the cap itself is added so the sweep reaches the limit."""
    cap = max_model_len - out_len
    if kv_tokens:
        cap = min(cap, kv_tokens - out_len)
    keep = [x for x in requested if x <= cap]
    dropped = [x for x in requested if x > cap]
    if dropped and cap >= 2 and cap not in keep:
        keep.append(cap)
    return sorted(keep), dropped


def _sweep(m: Main, lengths: list[int], out_len: int, mode: str, repeats: int = 1,
           figure: str = "long_context") -> list[dict[str, Any]]:
    """One row per length: the median-TTFT request of `repeats` (fresh tokens each, so no cache
    hits); a single request per point is at the mercy of whatever else the machine runs."""
    rows = []
    m.generate([m.tokens.make(16)], 2)  # warm-up
    for n in lengths:
        tries = []
        for _ in range(repeats):
            outs, wall = m.generate([m.tokens.make(n)], out_len, figure=figure)
            tries.append(request_timing(outs[0]) | {"e2e_ms": wall * 1000})
        tries.sort(key=lambda r: r["ttft_ms"] if r["ttft_ms"] is not None else math.inf)
        r = tries[(len(tries) - 1) // 2]
        rows.append({"mode": mode, "input_len": n, **r, "repeats": repeats,
                     "ttft_ms_min": tries[0]["ttft_ms"], "ttft_ms_max": tries[-1]["ttft_ms"],
                     "prefill_tok_per_s": safe_ratio(n, (r["prefill_ms"] or 0) / 1000),
                     "decode_tok_per_s": safe_ratio(1000.0, r["tpot_ms"])})
    return rows


def long_context(run: SectionRun, main: Main | None) -> Table:
    """TTFT and decode speed vs input length on the main engine (chunked prefill as configured)."""
    c = run.conf
    if not c.long_context:
        raise SectionSkipped("long_context: false in params", zh="参数文件中设置了 long_context: false")
    m = _need(main)
    lengths, dropped = context_lengths(c.long_context_lengths, m.info["max_model_len"], c.long_context_output_len,
                                       m.info.get("kv_cache_tokens"))
    if not lengths:
        raise SectionSkipped(f"no length fits max_model_len {m.info['max_model_len']}",
                             zh=f"没有任何长度能放入 max_model_len {m.info['max_model_len']}")
    chunked = bool(m.info.get("enable_chunked_prefill"))
    mode = "chunked_on" if chunked else "chunked_off"
    budget = m.info.get("max_num_batched_tokens")
    rows = _sweep(m, lengths, c.long_context_output_len, mode, c.long_context_repeats)
    for r in rows:  # scheduler steps the prompt's prefill took (the step budget splits it)
        r["prefill_chunks"] = math.ceil(r["input_len"] / budget) if chunked and budget else 1
    run.save_rows("long_context_requests", rows)
    run.add("long_context", {"mode": mode, "lengths": lengths, "dropped_lengths": dropped,
                             "max_num_batched_tokens": budget,
                             "chunked_lengths": [r["input_len"] for r in rows if r["prefill_chunks"] > 1],
                             "points": [{k: r[k] for k in ("input_len", "prefill_chunks", "ttft_ms", "ttft_ms_min",
                                                            "ttft_ms_max", "prefill_ms", "tpot_ms", "decode_tok_per_s",
                                                            "prefill_tok_per_s")} for r in rows]})
    return Table("long_context", rows, {"lengths": lengths, "dropped": dropped},
                 ["mode", "input_len", "prefill_chunks", "ttft_ms", "ttft_ms_min", "ttft_ms_max", "prefill_ms",
                  "prefill_tok_per_s", "tpot_ms", "decode_tok_per_s"])


def chunked_prefill_off(run: SectionRun, main: Main | None, on: Table | None) -> Table:
    """The same sweep on an engine with chunked prefill off (the whole prompt in one step, so the
    step budget must hold the longest prompt)."""
    c = run.conf
    if not (c.long_context and c.chunked_prefill_off):
        raise SectionSkipped("long_context / chunked_prefill_off: false (params file or its profile)",
                             zh="参数文件或其运行档位设置了 long_context / chunked_prefill_off: false")
    m = _need(main)
    if on is None:
        raise SectionSkipped("the chunked-on sweep did not run (see step 'long_context')",
                             zh="开启分块预填充（chunked prefill）的长度扫描未运行（见步骤 'long_context'）")
    if not m.info.get("enable_chunked_prefill"):
        raise SectionSkipped("the main engine already runs with chunked prefill off",
                             zh="主引擎本身已在关闭分块预填充（chunked prefill）的状态下运行")
    lengths = on.summary["lengths"]
    if not any(r["prefill_chunks"] > 1 for r in on.rows):
        # chunking only splits a prompt longer than the step budget: off would run the same schedule
        raise SectionSkipped(f"no swept length exceeds the main engine's max_num_batched_tokens "
                             f"{m.info.get('max_num_batched_tokens')}: chunked prefill split no prompt; "
                             "set features.chunk_tokens below the longest length",
                             zh=f"扫描的长度均未超过主引擎的 max_num_batched_tokens "
                             f"{m.info.get('max_num_batched_tokens')}：分块预填充没有切分任何提示词；"
                             "请将 features.chunk_tokens 设为小于最长长度的值")
    eng = run.engine("features-chunked-off", enable_chunked_prefill=False,
                     max_num_batched_tokens=max(m.info["max_model_len"], m.info.get("max_num_batched_tokens") or 0))
    try:
        off = Main(eng, {}, m.tokens, m.guard)
        rows = [r | {"prefill_chunks": 1} for r in _sweep(off, lengths, c.long_context_output_len, "chunked_off",
                                                          c.long_context_repeats, "chunked_prefill")]
    finally:
        eng.close()
    run.save_rows("long_context_chunked_off_requests", rows)
    by_len = {r["input_len"]: r for r in on.rows}
    run.add("chunked_prefill", {"lengths": lengths, "points": [
        {"input_len": r["input_len"], "prefill_chunks_on": by_len[r["input_len"]]["prefill_chunks"],
         "ttft_ms_chunked_on": by_len[r["input_len"]]["ttft_ms"],
         "ttft_ms_chunked_off": r["ttft_ms"], "tpot_ms_chunked_on": by_len[r["input_len"]]["tpot_ms"],
         "tpot_ms_chunked_off": r["tpot_ms"]} for r in rows]})
    return Table("chunked_prefill_off", rows, {"lengths": lengths}, on.columns)


def long_context_plot(run: SectionRun, on: Table | None, off: Table | None) -> Plot:
    """TTFT and decode speed vs input length, chunked prefill on (and off when measured)."""
    if on is None:
        raise SectionSkipped("no long-context sweep to plot", zh="没有可绘图的长上下文扫描结果")
    from ... import plotting

    word = plotting.word
    target = f"{run.cfg.target.engine}/{run.cfg.target.device}"
    lengths = sorted({r["input_len"] for t in (on, off) if t is not None for r in t.rows})
    with plotting.style(plotting.language(run)) as (plt, lang):
        fig, ((a, b),) = plotting.figure(plt, 3.9, ncols=2)
        for t, style in ((on, "o-"), (off, "s--")):
            if t is None:
                continue
            xs = [r["input_len"] for r in t.rows]
            label = word(lang, t.rows[0]["mode"]) if t.rows[0]["mode"] in plotting.WORDS else t.rows[0]["mode"]
            a.plot(xs, [r["ttft_ms"] for r in t.rows], style, label=label)
            b.plot(xs, [r["decode_tok_per_s"] for r in t.rows], style, label=label)
        for ax, title, ylabel in ((a, "ttft_vs_len", word(lang, "ttft_ms")),
                                  (b, "decode_vs_len", word(lang, "tok_s", what=word(lang, "decode_speed")))):
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths, [str(x) for x in lengths])  # the measured lengths, not powers of two between
            ax.set_xlabel(word(lang, "input_axis"))
            ax.set_ylabel(ylabel)
            ax.set_title(word(lang, title))
        b.set_ylim(0, b.get_ylim()[1] * 1.08)  # speeds from zero, with room above the top point
        fig.suptitle(word(lang, "long_context", model=run.cfg.model.short_name, target=target))
        plotting.legend_below(fig, *a.get_legend_handles_labels())
        path = plotting.save(fig, run.artifact_path("long_context.png"))
    return Plot(str(path))

