"""Performance section: offline latency/throughput, prefill/decode split, graph vs eager,
roofline, memory, and the serving benchmark with sweeps.

Every function takes the notebook's `SectionRun`, measures, stores its metrics with `run.add`
(keys carry units; None = not measured) and returns a result with `.table()` for display.
Statistics live in `metrics.py`; the HTTP client and arrival process in `loadgen.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import device as device_mod
from ... import loadgen, metrics, models, records
from ...context import SectionRun, SectionSkipped
from ...engines import Engine, Sampling
from ...token_prompts import TokenPrompts

# =========================================================================== set-up


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
                              (srv, "concurrencies", r.concurrencies), (conf.graph, "enabled", r.graph)):
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
        raise SectionSkipped("offline measurements need a local engine (vllm or hf); target engine is openai")
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


# =========================================================================== offline latency


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


def latency(run: SectionRun, pe: PerfEngine | None, p: Plan) -> LatencyResult:
    """`vllm bench latency`: one batch of fixed-length prompts, warm-up not counted, p10..p99."""
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


# =========================================================================== offline throughput


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


def throughput(run: SectionRun, pe: PerfEngine | None, p: Plan) -> ThroughputResult:
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


# =========================================================================== prefill / decode split


@dataclass
class SplitResult:
    rows: list[dict[str, Any]]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows).set_index("batch_size")


def prefill_decode(run: SectionRun, pe: PerfEngine | None, p: Plan) -> SplitResult:
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
            return float(np.median([_timed_generate(pe.engine, prompts, _fixed(n, i))[0] for i in range(c.iters)]))

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


# =========================================================================== graph vs eager


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
                   thr: ThroughputResult | None) -> GraphResult:
    """The latency and throughput workloads with enforce_eager true and false; start-up included.
    The section's main engine supplies the mode it runs in (and is closed after it); the other
    mode gets its own engine."""
    if run.cfg.target.engine != "vllm":
        raise SectionSkipped(f"graph vs eager applies to vLLM engines (target engine is {run.cfg.target.engine})")
    if not p.conf.graph.enabled:
        raise SectionSkipped("graph.enabled is false" + (" (reduced counts for a big model)" if p.reduced else ""))
    pe = _need(run, pe)
    c, t = p.conf.latency, p.conf.throughput
    main_eager = bool(pe.info.get("enforce_eager", run.cfg.target.enforce_eager))

    def measure(eng: Engine, load_s: float, eager: bool) -> dict[str, Any]:
        tok = eng.tokenizer()
        lp = token_prompts(tok, c.batch_size, c.input_len, p.conf.seed)
        for i in range(c.warmup_iters):
            _timed_generate(eng, lp, _fixed(c.output_len, i))
        lats = [_timed_generate(eng, lp, _fixed(c.output_len, 1000 + i))[0] for i in range(c.iters)]
        tp = token_prompts(tok, t.num_prompts, t.input_len, p.conf.seed + 1)
        _timed_generate(eng, tp[:4], _fixed(t.output_len))
        dt, gens = _timed_generate(eng, tp, _fixed(t.output_len))
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


# =========================================================================== roofline


def _find_number(obj: Any, names: tuple[str, ...]) -> float | None:
    """First numeric value under any of `names`, searched depth-first in a record's metrics."""
    if isinstance(obj, dict):
        for n in names:
            v = obj.get(n)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
        for v in obj.values():
            found = _find_number(v, names)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find_number(v, names)
            if found is not None:
                return found
    return None


@dataclass
class RooflineResult:
    values: dict[str, Any]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.values.items()), columns=["item", "value"]).set_index("item")


def roofline(run: SectionRun, p: Plan, split: SplitResult | None) -> RooflineResult:
    """Decode model-bandwidth utilisation and prefill model-FLOPs utilisation (formulas in
    metrics.decode_bandwidth_utilization / prefill_flops_utilization), against the bandwidth
    and matmul throughput measured by the environment section."""
    split = run.needs("prefill_decode", split)
    if not split.rows:
        raise RuntimeError("the prefill/decode step measured no batch size: nothing to compare")
    env = records.load(run.run_dir, "environment")
    if env is None:
        raise SectionSkipped("no records/environment.json in this run: run the environment section first")
    m = env.get("metrics", {})
    # The environment section's flat `roofline` block first (env.roofline_inputs), then anywhere in
    # its metrics. Decode streams the weights: the read bandwidth is its roof, copy is the fallback.
    src = [m.get("roofline") or {}, m]
    bw_key = next((k for k in ("read_bandwidth_gbps", "copy_bandwidth_gbps") if _find_number(src, (k,))), None)
    bw_gbps = _find_number(src, (bw_key,)) if bw_key else None
    dt = str(p.model_facts.get("run_dtype", "float32"))
    mm_key = {"bfloat16": "matmul_bf16_tflops", "float16": "matmul_fp16_tflops"}.get(dt, "matmul_fp32_tflops")
    if not _find_number(src, (mm_key,)):
        mm_key = "matmul_fp32_tflops"  # no probe in the run dtype: the fp32 roof, and the key says so
    tflops = _find_number(src, (mm_key,))
    if bw_gbps is None and tflops is None:
        raise SectionSkipped("the environment record has no measured bandwidth or matmul throughput")
    f = p.model_facts
    if not f.get("weights_bytes") or not f.get("param_count"):
        raise RuntimeError("parameter count unknown (no safetensors checkpoint found)")
    c = p.conf.split
    row = max(split.rows, key=lambda r: r["batch_size"])  # the largest batch is closest to a roof
    out: dict[str, Any] = {"batch_size": row["batch_size"], "measured_bandwidth_gbps": bw_gbps,
                           "bandwidth_key": bw_key, "measured_matmul_tflops": tflops, "matmul_dtype_key": mm_key}
    if bw_gbps and row.get("decode_tok_per_s"):
        d = metrics.decode_bandwidth_utilization(
            f["weights_bytes"], f.get("kv_bytes_per_token") or 0.0, row["batch_size"],
            c.decode_input_len + c.decode_output_len / 2, row["decode_tok_per_s"] / row["batch_size"], bw_gbps * 1e9)
        u = d["decode_bandwidth_utilization"]
        if u is not None and u > 1:
            # Bytes per step above DRAM bandwidth: the weights stay in cache between steps (small
            # models on CPUs), so the DRAM roof does not bound decode. Not a utilisation.
            d["decode_bandwidth_note"] = (f"achieved {d['decode_achieved_gbps']:.1f} GB/s exceeds the measured "
                                          f"{bw_gbps:.1f} GB/s: the working set fits in cache")
            d["decode_bandwidth_utilization"] = None
        out.update(d)
    if tflops:
        pf = metrics.prefill_flops_utilization(
            f["param_count"], f["num_layers"] or 0, f["hidden_size"] or 0, c.prefill_input_len,
            row["batch_size"], row["prefill_s"], tflops * 1e12)
        u = pf["prefill_flops_utilization"]
        if u is not None and u > 1:
            # The engine beat the probe: the probe's matmul (plain torch in this dtype) is not the
            # engine's kernel path (oneDNN/AMX, fused ops), so it is no roof here. Not a utilisation.
            pf["prefill_flops_note"] = (f"achieved {pf['prefill_achieved_tflops_per_s']:.4g} TFLOP/s exceeds the "
                                        f"measured {mm_key} {tflops:.4g}: the probe does not bound the engine's kernels")
            pf["prefill_flops_utilization"] = None
        out.update(pf)
    run.add("roofline", out)
    return RooflineResult(out)


# =========================================================================== memory


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


# =========================================================================== serving


@dataclass
class ServingResult:
    points: list[dict[str, Any]]  # one metrics dict per load point (main + sweeps)
    plots: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        keys = ["sweep", "request_rate_label", "max_concurrency", "completed_count", "failed_count",
                "request_throughput_req_per_s", "output_tok_per_s", "total_tok_per_s", "peak_output_tok_per_s",
                "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
                "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "median_e2el_ms", "p99_e2el_ms", "goodput_req_per_s"]
        return pd.DataFrame([{k: pt.get(k) for k in keys} for pt in self.points])


class ServingFailed(RuntimeError):
    """Too many requests of a load point failed; measured rows and metrics are already saved."""


def _rate(x: Any) -> float:
    return math.inf if x == "inf" else float(x)


def serving(run: SectionRun, p: Plan) -> ServingResult:
    """Main load point, then the request-rate sweep and the concurrency sweep, against a served
    model; rows after every point go to records/performance.requests.jsonl."""
    c = p.conf.serving
    if not c.enabled:
        raise SectionSkipped("serving.enabled is false")
    if c.url:  # this section's own endpoint wins over the run's server
        return _serve_against(run, p, c.url.rstrip("/"))
    if run.cfg.target.engine == "hf" and not run.cfg.server.url:
        raise SectionSkipped("not applicable: the hf engine has no server (set performance.serving.url to "
                             "benchmark an existing OpenAI-compatible endpoint)")
    # params' server.url, else the run's shared server (ASCENDEVAL_SHARED_SERVER_URL), else one
    # started here for this step and stopped after it
    with run.served("serving") as base:
        return _serve_against(run, p, base)


def _serve_against(run: SectionRun, p: Plan, base_url: str) -> ServingResult:
    c = p.conf.serving
    models = loadgen.list_models(base_url, run.cfg.server.api_key)
    name = run.cfg.server.served_model_name if run.cfg.server.served_model_name in models else models[0]
    ep = loadgen.Endpoint(base_url, name, api=c.api, api_key=run.cfg.server.api_key, timeout_s=c.timeout_s,
                          ignore_eos=c.ignore_eos)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model().path, trust_remote_code=run.cfg.model.trust_remote_code)
    slo = {"ttft": c.slo_ttft_ms, "tpot": c.slo_tpot_ms, "e2el": c.slo_e2el_ms}
    points: list[dict[str, Any]] = []
    all_rows: list[dict[str, Any]] = []
    n_sweep = c.sweep_num_prompts or c.num_prompts
    plan_points = [("main", loadgen.LoadSpec(_rate(c.request_rate), c.burstiness, c.max_concurrency, c.seed), c.num_prompts)]
    plan_points += [("rate", loadgen.LoadSpec(_rate(r), c.burstiness, c.max_concurrency, c.seed), n_sweep)
                    for r in c.request_rates]
    plan_points += [("concurrency", loadgen.LoadSpec(math.inf, c.burstiness, k, c.seed), n_sweep) for k in c.concurrencies]
    n_warm = c.warmup_requests
    for i, (sweep, spec, n) in enumerate(plan_points):
        # Fresh prompts for every point and for its warm-up: the server caches prefixes (vLLM's
        # default), so prompts sent before would be timed as cache hits.
        ids = token_prompts(tok, n + n_warm, c.input_len, c.seed + 100 + i)  # exact input length
        prompts: list[Any] = [tok.decode(x) for x in ids] if c.api == "chat" else ids
        lr = loadgen.run_load(ep, prompts[n_warm:], c.output_len, spec, prompt_tokens=[c.input_len] * n,
                              warmup_requests=n_warm, warmup_prompts=prompts[:n_warm])
        m = lr.metrics(slo)
        m["sweep"] = sweep
        points.append(m)
        all_rows += lr.rows(sweep=sweep)
        run.save_rows("requests", all_rows)  # after every point: a crash later keeps these
        run.add("serving", points)
        if m["failed_rate"] and m["failed_rate"] > c.max_failed_fraction:
            first = next(iter(m["errors"]), "?")
            raise ServingFailed(f"{m['failed_count']}/{m['num_requests']} requests failed at {spec.label()} "
                                f"(allowed fraction {c.max_failed_fraction}); first error: {first}")
    main = points[0]
    run.add("serving_main", {k: v for k, v in main.items() if k != "errors"})
    plots = serving_plots(run, points, all_rows)
    return ServingResult(points, plots)


def serving_plots(run: SectionRun, points: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """TTFT/TPOT vs request rate, throughput vs concurrency, latency CDFs; PNGs under artifacts/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    rate_pts = [pt for pt in points if pt["sweep"] == "rate"]
    if rate_pts:
        finite = [pt for pt in rate_pts if pt["request_rate_req_per_s"] is not None]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, axis in (("ttft", ax[0]), ("tpot", ax[1])):
            xs = [pt["request_rate_req_per_s"] for pt in finite]
            for stat in ("median", "p99"):
                axis.plot(xs, [pt[f"{stat}_{key}_ms"] for pt in finite], marker="o", label=stat)
            for pt in rate_pts:
                if pt["request_rate_req_per_s"] is None:
                    axis.axhline(pt[f"median_{key}_ms"] or 0, ls="--", c="grey", label="median at rate inf")
            axis.set_xlabel("request rate (req/s)")
            axis.set_ylabel(f"{key.upper()} (ms)")
            axis.legend()
        fig.tight_layout()
        path = run.artifact_path("perf_latency_vs_rate.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    conc_pts = [pt for pt in points if pt["sweep"] == "concurrency"]
    if conc_pts:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.plot([pt["max_concurrency"] for pt in conc_pts], [pt["output_tok_per_s"] or 0 for pt in conc_pts], marker="o")
        ax.set_xlabel("max concurrency")
        ax.set_ylabel("output tokens/s")
        ax.set_xscale("log", base=2)
        fig.tight_layout()
        path = run.artifact_path("perf_throughput_vs_concurrency.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    if rows:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        df = pd.DataFrame([r for r in rows if r["success"] and not r["warmup"]])
        if not df.empty:
            for (sweep, load), g in df.groupby(["sweep", "load"]):
                for key, axis in (("ttft_ms", ax[0]), ("e2el_ms", ax[1])):
                    v = np.sort(g[key].dropna().to_numpy())
                    axis.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{sweep} {load}")
            for key, axis in (("TTFT (ms)", ax[0]), ("E2E latency (ms)", ax[1])):
                axis.set_xlabel(key)
                axis.set_ylabel("fraction of requests")
            ax[1].legend(fontsize=7)
        fig.tight_layout()
        path = run.artifact_path("perf_latency_cdf.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    return out


def show_plots(result: ServingResult | None) -> list[str]:
    """Display the serving plots inline (a notebook helper; nothing to show if serving did not run)."""
    if result is None or not result.plots:
        raise SectionSkipped("no serving plots (the serving step did not run)")
    from IPython.display import Image, display

    for path in result.plots:
        display(Image(filename=path))
    return result.plots
