"""Offline measurements on the shared engine: latency (`vllm bench latency` semantics), throughput,
the prefill / decode split, memory, and graph vs eager."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ... import device as device_mod
from ... import metrics
from ...context import SectionRun, SectionSkipped
from ...engines import Engine
from ...output_guard import OutputGuard
from .setup import (
    PerfEngine,
    Plan,
    _check_len,
    _engine_overrides,
    _fixed,
    _need,
    _timed_generate,
    close_engine,
    token_prompts,
)


def _keep(guard: OutputGuard | None, figure: str, gens: list[Any]) -> None:
    # `vllm bench latency/throughput` sample (temperature 1.0, ignore_eos): see setup._fixed
    if guard is not None:
        guard.keep(figure, gens, sampled=True, ignore_eos=True)


@dataclass
class LatencyResult:
    summary: dict[str, Any]
    e2e: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        s = self.summary
        rows = [("input / output / batch", f"{s['input_len']} / {s['output_len']} / {s['batch_size']}"),
                ("avg latency (s)", s["avg_latency_s"])]
        rows += [(f"P{p} latency (s)", s[f"p{p}_latency_s"]) for p in (10, 25, 50, 75, 90, 99)]
        rows += [("prompt throughput (tok/s)", s["prompt_tok_per_s"]),
                 ("generation throughput (tok/s)", s["generation_tok_per_s"])]
        rows += [(f"e2e latency, {r['output_len']} out (s)", f"{r['mean_latency_s']:.3f} ({r['output_tok_per_s']:.1f} tok/s)")
                 for r in self.e2e]
        return pd.DataFrame(rows, columns=["metric", "value"]).set_index("metric")


def latency(run: SectionRun, pe: PerfEngine | None, p: Plan, guard: OutputGuard | None = None) -> LatencyResult:
    """`vllm bench latency`: one batch of fixed-length prompts, warm-up not counted, p10..p99.
    `guard`: keeps the timed iterations' outputs for the correctness check (figure `latency`)."""
    pe = _need(run, pe)
    c = p.conf.latency
    _check_len(pe, "latency", c.input_len, c.output_len)
    for out_len in c.e2e_output_lens:
        _check_len(pe, "latency.e2e_output_lens", c.input_len, out_len)
    tok = pe.engine.tokenizer()
    prompts = token_prompts(tok, c.batch_size, c.input_len, p.conf.seed)
    for i in range(c.warmup_iters):  # warm-up: allocator, kernels/graphs, caches; never counted
        _timed_generate(pe.engine, prompts, _fixed(c.output_len, i))
    lat, rows = [], []
    for i in range(c.iters):
        dt, gens = _timed_generate(pe.engine, prompts, _fixed(c.output_len, 1000 + i))
        produced = sum(g.num_output_tokens for g in gens)
        if produced != c.batch_size * c.output_len:
            raise RuntimeError(f"iteration {i} produced {produced} tokens, expected {c.batch_size * c.output_len} "
                               f"(ignore_eos not honoured?)")
        lat.append(dt)
        _keep(guard, "latency", gens)
        rows.append({"kind": "latency", "iter": i, "latency_s": dt, "batch_size": c.batch_size,
                     "input_len": c.input_len, "output_len": c.output_len})
    s = metrics.latency_summary(lat)
    s.update(input_len=c.input_len, output_len=c.output_len, batch_size=c.batch_size, warmup_iters=c.warmup_iters,
             prompt_tok_per_s=c.batch_size * c.input_len / s["avg_latency_s"],
             generation_tok_per_s=c.batch_size * c.output_len / s["avg_latency_s"])
    e2e = []
    for out_len in c.e2e_output_lens:
        _timed_generate(pe.engine, prompts[:1], _fixed(out_len))  # warm-up for this shape
        times, ttfts = [], []
        for i in range(c.e2e_iters):
            dt, gens = _timed_generate(pe.engine, prompts[:1], _fixed(out_len, 2000 + i))
            times.append(dt)
            if gens[0].timing.ttft_s is not None:
                ttfts.append(gens[0].timing.ttft_s)
            rows.append({"kind": "e2e", "iter": i, "latency_s": dt, "batch_size": 1, "input_len": c.input_len,
                         "output_len": out_len, "ttft_s": gens[0].timing.ttft_s})
        mean = float(np.mean(times))
        e2e.append({"output_len": out_len, "mean_latency_s": mean, "output_tok_per_s": out_len / mean,
                    "mean_ttft_ms": float(np.mean(ttfts)) * 1e3 if ttfts else None, "iters_count": len(times)})
    run.save_rows("latency", rows)
    run.add("latency", s)
    run.add("e2e_latency", e2e)
    return LatencyResult(s, e2e)


@dataclass
class ThroughputResult:
    harness: dict[str, Any]
    bare: dict[str, Any] | None
    ratio: float | None

    def table(self) -> pd.DataFrame:
        cols = {"harness (engine.generate)": self.harness}
        if self.bare:
            cols["bare LLM.generate"] = self.bare
        keys = ["num_requests", "total_input_tokens", "total_output_tokens", "elapsed_s",
                "request_throughput_req_per_s", "total_tok_per_s", "output_tok_per_s"]
        df = pd.DataFrame({k: [v.get(x) for x in keys] for k, v in cols.items()}, index=keys)
        if self.ratio is not None:
            df.loc["harness / bare, output tok/s (goal >= 0.98)"] = [self.ratio] * len(cols)
        return df


def throughput(run: SectionRun, pe: PerfEngine | None, p: Plan, guard: OutputGuard | None = None
               ) -> ThroughputResult:
    """`vllm bench throughput` over N prompts, through the harness AND through a bare
    `LLM.generate` on the same prompts and engine, alternating, so the harness overhead is
    measured in the same run (goal: harness >= 0.98 x bare)."""
    pe = _need(run, pe)
    c = p.conf.throughput
    _check_len(pe, "throughput", c.input_len, c.output_len)
    prompts = token_prompts(pe.engine.tokenizer(), c.num_prompts, c.input_len, p.conf.seed + 1)
    sampling = _fixed(c.output_len)
    llm = getattr(pe.engine, "llm", None)
    bare_fn = None
    if llm is not None:
        sp = pe.engine.sampling_params(sampling)  # type: ignore[attr-defined]
        inputs = [{"prompt_token_ids": x} for x in prompts]

        def bare_fn() -> float:
            t0 = time.perf_counter()
            outs = llm.generate(inputs, sp, use_tqdm=False)
            dt = time.perf_counter() - t0
            n_out = sum(len(o.outputs[0].token_ids) for o in outs)
            if n_out != c.num_prompts * c.output_len:
                raise RuntimeError(f"bare LLM.generate produced {n_out} tokens, expected {c.num_prompts * c.output_len}")
            return dt

    _timed_generate(pe.engine, prompts[: min(4, len(prompts))], sampling)  # warm-up
    h_times, b_times = [], []
    for r in range(c.repeats):
        order = ("h", "b") if r % 2 == 0 else ("b", "h")  # alternate: drift hits both alike
        for who in order:
            if who == "h":
                dt, gens = _timed_generate(pe.engine, prompts, sampling)
                n_out = sum(g.num_output_tokens for g in gens)
                if n_out != c.num_prompts * c.output_len:
                    raise RuntimeError(f"harness produced {n_out} tokens, expected {c.num_prompts * c.output_len}")
                h_times.append(dt)
                _keep(guard, "throughput", gens)
            elif bare_fn is not None:
                b_times.append(bare_fn())
    n_in, n_out = c.num_prompts * c.input_len, c.num_prompts * c.output_len
    harness = metrics.throughput_summary(c.num_prompts, n_in, n_out, float(np.median(h_times)))
    bare = metrics.throughput_summary(c.num_prompts, n_in, n_out, float(np.median(b_times))) if b_times else None
    ratio = harness["output_tok_per_s"] / bare["output_tok_per_s"] if bare else None
    run.add("throughput", harness)
    run.add("throughput_bare", bare)
    run.add("throughput_harness_vs_bare_x", ratio)
    return ThroughputResult(harness, bare, ratio)


@dataclass
class SplitResult:
    rows: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows).set_index("batch_size")


def prefill_decode(run: SectionRun, pe: PerfEngine | None, p: Plan, guard: OutputGuard | None = None) -> SplitResult:
    """Per batch size: prefill tok/s = B * L_in / T(long input, 1 token out);
    decode tok/s = B * (L_out - 1) / (T(short input, L_out out) - T(short input, 1 out)),
    i.e. the decode time is what the extra L_out - 1 tokens cost on top of the short prefill."""
    pe = _need(run, pe)
    c = p.conf.split
    _check_len(pe, "split (prefill)", c.prefill_input_len, 1)
    _check_len(pe, "split (decode)", c.decode_input_len, c.decode_output_len)
    tok = pe.engine.tokenizer()
    out = []
    for b in c.batch_sizes:
        long_p = token_prompts(tok, b, c.prefill_input_len, p.conf.seed + 10 + b)
        short_p = token_prompts(tok, b, c.decode_input_len, p.conf.seed + 20 + b)
        _timed_generate(pe.engine, long_p, _fixed(1))  # warm-up of these shapes
        _timed_generate(pe.engine, short_p, _fixed(2))

        def med(prompts: list[list[int]], n: int) -> float:
            times = []
            for i in range(c.iters):
                dt, gens = _timed_generate(pe.engine, prompts, _fixed(n, i))
                times.append(dt)
                _keep(guard, "prefill_decode", gens)
            return float(np.median(times))

        t_prefill = med(long_p, 1)
        t_short1 = med(short_p, 1)
        t_decode = med(short_p, c.decode_output_len)
        decode_s = t_decode - t_short1
        out.append({
            "batch_size": b,
            "prefill_input_len": c.prefill_input_len,
            "prefill_s": t_prefill,
            "prefill_tok_per_s": b * c.prefill_input_len / t_prefill,
            "decode_output_len": c.decode_output_len,
            "decode_s": decode_s if decode_s > 0 else None,
            "decode_tok_per_s": b * (c.decode_output_len - 1) / decode_s if decode_s > 0 else None,
            "decode_ms_per_step": decode_s / (c.decode_output_len - 1) * 1e3 if decode_s > 0 else None,
        })
    run.add("prefill_decode", out)
    return SplitResult(out)


@dataclass
class MemoryResult:
    values: dict[str, Any]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.values.items()), columns=["item", "value"], dtype=object).set_index("item")


def memory(run: SectionRun, pe: PerfEngine | None, p: Plan) -> MemoryResult:
    """Weights size, KV-cache capacity and the max concurrency the engine reports, peak memory."""
    pe = _need(run, pe)
    info = pe.info
    v: dict[str, Any] = {
        "weights_bytes": p.model_facts.get("weights_bytes") or info.get("weights_bytes"),
        "weight_bytes": p.model_facts.get("weight_bytes"),
        "kv_bytes_per_token": p.model_facts.get("kv_bytes_per_token"),
        "kv_cache_tokens": info.get("kv_cache_tokens"),
        "kv_cache_blocks_count": info.get("kv_cache_blocks"),
        "kv_cache_max_concurrency": info.get("kv_cache_max_concurrency"),
        "max_model_len_tokens": pe.max_model_len,
    }
    v.update(device_mod.process_tree_memory())
    if run.cfg.target.device != "cpu":
        # The engine's workers hold the model, not this process: read their rows of the device
        # tool's process table. Never torch.npu/torch.cuda here: it would read this process's ~0,
        # and initialising the NPU in this process breaks every later forked worker.
        dm = device_mod.engine_device_memory(run.cfg.target.device, device_mod.process_tree_pids())
        v["engine_device_memory_bytes"] = dm["engine_device_memory_bytes"]
        v["device_used_bytes"] = dm["device_used_bytes"]
        v["device_total_bytes"] = dm["device_total_bytes"]
        v["device_memory_source"] = dm["source"]
        v["device_memory_reason"] = dm["reason"]
    run.add("memory", v)
    return MemoryResult(v)


@dataclass
class GraphResult:
    rows: list[dict[str, Any]]
    delta: dict[str, Any]

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows).set_index("mode").T
        if self.delta:
            df["change"] = pd.Series({k: (f"{v:+.1%}" if v is not None else None) for k, v in self.delta.items()})
        return df


def _mode_label(eager: bool, device: str) -> str:
    graph = {"npu": "ACL graph", "cuda": "CUDA graph", "cpu": "torch.compile"}.get(device, "graph")
    return "eager" if eager else graph


def graph_vs_eager(run: SectionRun, pe: PerfEngine | None, p: Plan, lat: LatencyResult | None,
                   thr: ThroughputResult | None, guard: OutputGuard | None = None) -> GraphResult:
    """The latency and throughput workloads with enforce_eager true and false; start-up included.
    The section's main engine supplies the mode it runs in (and is closed after it); the other
    mode gets its own engine."""
    if run.cfg.target.engine != "vllm":
        raise SectionSkipped(f"graph vs eager applies to vLLM engines (target engine is {run.cfg.target.engine})",
                             zh=f"graph 与 eager 模式对比适用于 vLLM 引擎（被测目标的引擎为 {run.cfg.target.engine}）")
    if not p.conf.graph.enabled:
        raise SectionSkipped("graph.enabled is false" + (" (reduced counts for a big model)" if p.reduced else ""),
                             zh=f"graph.enabled 为 false{'（大模型，已采用缩减的测量次数）' if p.reduced else ''}")
    pe = _need(run, pe)
    c, t = p.conf.latency, p.conf.throughput
    main_eager = bool(pe.info.get("enforce_eager", run.cfg.target.enforce_eager))

    def measure(eng: Engine, load_s: float, eager: bool) -> dict[str, Any]:
        tok = eng.tokenizer()
        lp = token_prompts(tok, c.batch_size, c.input_len, p.conf.seed)
        for i in range(c.warmup_iters):
            _timed_generate(eng, lp, _fixed(c.output_len, i))
        figure = "graph_vs_eager." + ("eager" if eager else "graph")
        lats = []
        for i in range(c.iters):
            dt_i, gens_i = _timed_generate(eng, lp, _fixed(c.output_len, 1000 + i))
            lats.append(dt_i)
            _keep(guard, figure, gens_i)
        tp = token_prompts(tok, t.num_prompts, t.input_len, p.conf.seed + 1)
        _timed_generate(eng, tp[:4], _fixed(t.output_len))
        dt, gens = _timed_generate(eng, tp, _fixed(t.output_len))
        _keep(guard, figure, gens)
        ttfts = [g.timing.ttft_s for g in gens if g.timing.ttft_s is not None]
        # the mode as the engine resolved it (vllm-ascend / vLLM's platform checks may override
        # what was asked), not inferred from enforce_eager
        resolved = eng.info()
        return {"mode": _mode_label(eager, run.cfg.target.device), "enforce_eager": eager,
                "compilation_mode": resolved.get("compilation_mode"), "cudagraph_mode": resolved.get("cudagraph_mode"),
                "startup_s": load_s,
                "avg_latency_s": float(np.mean(lats)), "p50_latency_s": float(np.median(lats)),
                "output_tok_per_s": t.num_prompts * t.output_len / dt,
                "request_throughput_req_per_s": t.num_prompts / dt,
                "mean_ttft_ms": float(np.mean(ttfts)) * 1e3 if ttfts else None}

    rows = {main_eager: measure(pe.engine, float(pe.info.get("load_s") or 0.0), main_eager)}
    # One vLLM engine at a time: on a device the main engine holds most of the memory, and
    # in-process engines share vLLM's global state. This is the main engine's last use.
    close_engine(pe)
    other = run.engine("graph_" + ("eager" if not main_eager else "compiled"),
                       **_engine_overrides(run, enforce_eager=not main_eager))
    try:
        rows[not main_eager] = measure(other, float(other.info().get("load_s") or 0.0), not main_eager)
    finally:
        other.close()
    eager, graph = rows[True], rows[False]
    delta = {f"{k}_delta": metrics.relative_delta(graph[k], eager[k]) for k in
             ("startup_s", "avg_latency_s", "p50_latency_s", "output_tok_per_s", "request_throughput_req_per_s",
              "mean_ttft_ms")}
    run.add("graph_vs_eager", {"eager": eager, "graph": graph, "graph_vs_eager_delta": delta})
    return GraphResult([eager, graph], delta)

