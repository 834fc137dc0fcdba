"""Device check: exercise the parts of ascendeval that run without vLLM on one accelerator.

Written for a CUDA host that has torch and transformers but no vLLM (the `device` tool's H200),
and runs unchanged on an Ascend NPU (torch_npu) or the CPU. Six steps, each timed and wrapped so
that a failure is recorded and the next step still runs:

1. environment  `env.probe()` / `env.versions()`: Python, torch (+ its CUDA build), transformers,
                vLLM, CANN, nvidia-smi / npu-smi, CPU and memory; checks torch sees the device.
2. device       the seam `device.Device(kind)`: name, total memory, synchronize, and a known
                256 MiB allocation: allocated bytes rise by 256 MiB, the peak rises with it,
                empty_cache + reset_peak bring both back; then `measure_bandwidth` and
                `measure_matmul` with small budgets.
3. model        `builtin_models.ensure("tiny-qwen2-untrained")` (random init, seconds; cached
                under .cache/ afterwards).
4. hf_engine    `engines.hf_engine.HFEngine` on the device in bfloat16: checks the weights really
                are on the device in bf16, one warm-up, then greedy generation of 32 tokens for a
                few prompts (ignore_eos); prints TTFT / TPOT from the `Timing` objects next to a
                device-synchronised prefill forward of the same prompt, and checks
                0 < TTFT < E2E, 32 tokens, increasing token times.
5. precision    `precision.run_reference` (transformers, CPU, float32) -> `precision.open_target`
                (hf engine on the device, bfloat16) -> `precision.teacher_forced` (all positions,
                full vocabulary) -> `precision.free_running` -> `precision.verdict` with the
                default thresholds. Last-token figures (the Qwen2-0.5B reference report's method:
                CPU fp32 vs NPU bf16 logits of the last prompt token) are the same rows restricted
                to the last prompt position, summarised with `precision_metrics.summarize_positions`.
6. quality      multiple choice scored by option logprobs exactly as the quality section does
                (`quality._option_logprob_scores` over `quality.mc_prompt`), on the device (bf16)
                and on the CPU float32 reference; checks every score is a finite logprob (<= 0)
                and equals an independent recomputation from one teacher-forced forward pass.

The built-in model is untrained: accuracies and precision thresholds say how bf16 on this
device compares with fp32 on the CPU for THAT model, not how a real model scores.

Run (from the checkout; ascendeval needs no install, only torch, transformers, numpy, pyyaml,
pydantic, safetensors, psutil):

    PYTHONPATH=. python benchmarks/device_check.py --device cuda [--json out.json]
    python benchmarks/device_check.py --device cpu        # the same checks on the CPU

`--device` defaults to cuda when torch sees a GPU, else cpu. Exit code 1 when any step failed.

Imports: every ascendeval module is imported inside the step that uses it, so a module that
cannot be imported on the host fails only its step (with the ImportError in the table). The
modules used (device, env, builtin_models, engines.hf_engine, precision, precision_metrics,
quality, metrics, config) import no vLLM, papermill, nbconvert, modelscope, httpx or matplotlib
at module level; `tests/test_device_check.py` checks that.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

MODEL = "tiny-qwen2-untrained"
TARGET_DTYPE = "bfloat16"
ALLOC_MIB = 256
GEN_TOKENS = 32
GEN_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "中国的首都是",
    "Q: What is 17 * 23?\nA: 17 * 23 =",
]
# Multiple-choice inputs for the logprob path (quality section's item schema). Not a benchmark:
# the point is that the scoring path works on the device and agrees with the CPU reference.
MC_ITEMS = [
    {"id": "mc-capital", "question": "What is the capital of France?",
     "choices": ["Berlin", "Paris", "Rome", "Madrid"], "answer": 1, "subject": "geography"},
    {"id": "mc-arith", "question": "What is 7 + 5?", "choices": ["10", "11", "12", "13"], "answer": 2,
     "subject": "elementary_mathematics"},
    {"id": "mc-water", "question": "At sea level, water boils at",
     "choices": ["50 degrees Celsius", "100 degrees Celsius", "150 degrees Celsius"], "answer": 1, "subject": None},
    {"id": "mc-code", "question": "Which Python keyword defines a function?",
     "choices": ["def", "func", "lambda", "fn"], "answer": 0, "subject": "computer_science"},
]
MIB = 1024 * 1024


# --------------------------------------------------------------------------- step plumbing


class Step:
    """What one step measured (`figures`: the summary table; `details`: the JSON), and the
    checks that did not hold (`problems`)."""

    def __init__(self, name: str):
        self.name = name
        self.figures: dict[str, Any] = {}
        self.details: dict[str, Any] = {}
        self.problems: list[str] = []
        self.status = "ok"
        self.error: str | None = None
        self.seconds = 0.0

    def check(self, ok: bool, what: str) -> bool:
        """Record a failed expectation (`what` says what was expected and what was seen)."""
        if not ok:
            self.problems.append(what)
            print(f"  CHECK FAILED: {what}")
        return ok

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status, "seconds": round(self.seconds, 3),
                "error": self.error, "figures": self.figures, "details": self.details}


def run_step(name: str, fn: Callable[..., None], *args: Any) -> Step:
    """Run fn(step, *args); an exception or a failed check marks the step failed, nothing more."""
    st = Step(name)
    print(f"\n=== {name}")
    t0 = time.perf_counter()
    try:
        fn(st, *args)
    except Exception as exc:  # noqa: BLE001 - the point is to record it and go on
        st.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    st.seconds = time.perf_counter() - t0
    if st.problems:
        st.error = "; ".join(st.problems) + (f"; {st.error}" if st.error else "")
    st.status = "failed" if st.error else "ok"
    return st


def _fmt(v: Any, nd: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{nd}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _gib(n: int | None) -> float | None:
    return None if n is None else round(n / 2**30, 2)


def _ms(s: float | None) -> float | None:
    return None if s is None else s * 1e3


# --------------------------------------------------------------------------- 1. environment


def step_environment(st: Step, kind: str) -> None:
    from ascendeval.sections.environment import probe as env

    p = env.probe()
    v = env.versions()
    t = p["torch"]
    gpus = p["nvidia_smi"]["gpus"]
    chips = p["npu_smi"].get("chips", [])
    facts = {
        "python": v["python"], "torch": v["torch"], "torch_cuda_build": t.get("cuda_build"),
        "transformers": v["transformers"], "vllm": v["vllm"], "torch_npu": v["torch_npu"], "cann": v["cann"],
        "cpu": p["cpu"]["model"], "usable_cpus": p["cpu"]["usable_cpus"],
        "memory_gib": _gib(p["memory"]["total_bytes"]),
        "cuda_available": t.get("cuda_available"), "cuda_devices": [d["name"] for d in t.get("cuda_devices", [])],
        "npu_available": t.get("npu_available"),
        "nvidia_smi": [f"{g.get('name')} driver {g.get('driver_version')} {g.get('memory_total_mib')} MiB" for g in gpus]
                      or p["nvidia_smi"]["reason"],
        "npu_smi": [f"{c.get('name')} {c.get('health')}" for c in chips] or p["npu_smi"]["reason"],
        "git": v["ascendeval_git"],
    }
    for k, val in facts.items():
        print(f"  {k:18} {val}")
    st.details.update(facts=facts, probe=env.for_record(p))
    st.figures.update(torch=v["torch"], transformers=v["transformers"], vllm=v["vllm"] or "absent")
    st.check(t.get("present", False), "torch imports")
    if kind == "cuda":
        st.check(bool(t.get("cuda_available")), "--device cuda but torch.cuda.is_available() is False")
    if kind == "npu":
        st.check(bool(t.get("npu_available")), "--device npu but torch.npu is not available")


# --------------------------------------------------------------------------- 2. device seam


def _known_allocation(st: Step, dev: Any) -> None:
    """Allocate ALLOC_MIB through torch and read the seam before, during and after.

    Accelerators report allocator bytes (exact up to block rounding); the CPU reports the
    process RSS and its VmHWM, so other threads' allocations add noise: hence the tolerances."""
    import torch

    n = ALLOC_MIB * MIB
    tol = 0.02 if dev.kind != "cpu" else 0.10
    dev.synchronize()
    dev.empty_cache()
    st.check(dev.reset_peak(), "reset_peak() returns True")
    base = dev.memory_allocated_bytes()
    t = torch.ones(n // 4, dtype=torch.float32, device=dev.torch_device)  # ones: pages touched on the CPU too
    dev.synchronize()
    held = dev.memory_allocated_bytes()
    peak_held = dev.peak_memory_bytes()
    del t
    dev.empty_cache()
    dev.synchronize()
    freed = dev.memory_allocated_bytes()
    reset_ok = dev.reset_peak()
    peak_reset = dev.peak_memory_bytes()
    m = {"alloc_delta_mib": (held - base) / MIB, "peak_rise_mib": (peak_held - base) / MIB,
         "after_free_delta_mib": (freed - base) / MIB, "peak_after_reset_minus_current_mib": (peak_reset - freed) / MIB,
         "peak_drop_on_reset_mib": (peak_held - peak_reset) / MIB}
    print("  known allocation of %d MiB: " % ALLOC_MIB + ", ".join(f"{k}={v:.1f}" for k, v in m.items()))
    st.details["known_allocation"] = {**m, "tolerance": tol, "base_bytes": base}
    st.figures["alloc_delta_mib"] = round(m["alloc_delta_mib"], 1)
    st.figures["peak_rise_mib"] = round(m["peak_rise_mib"], 1)
    lo, hi = ALLOC_MIB * (1 - tol), ALLOC_MIB * (1 + tol)
    st.check(lo <= m["alloc_delta_mib"] <= hi, f"allocated bytes rise by {ALLOC_MIB} MiB (+-{tol:.0%}): {m['alloc_delta_mib']:.1f}")
    st.check(m["peak_rise_mib"] >= lo, f"peak rises by >= {lo:.0f} MiB: {m['peak_rise_mib']:.1f}")
    st.check(abs(m["after_free_delta_mib"]) <= ALLOC_MIB * tol,
             f"allocated bytes back to the start after del + empty_cache: {m['after_free_delta_mib']:.1f} MiB")
    st.check(reset_ok and m["peak_after_reset_minus_current_mib"] <= ALLOC_MIB * tol,
             f"after reset_peak the peak is the current usage: +{m['peak_after_reset_minus_current_mib']:.1f} MiB")
    st.check(m["peak_drop_on_reset_mib"] >= lo, f"reset_peak drops the peak by >= {lo:.0f} MiB: {m['peak_drop_on_reset_mib']:.1f}")


def step_device(st: Step, kind: str) -> None:
    from ascendeval.device import Device, is_finite_positive, measure_bandwidth, measure_matmul

    dev = Device(kind)
    total = dev.total_memory_bytes()
    print(f"  {dev!r}: {dev.name()}, {_gib(total)} GiB, {dev.count()} visible")
    st.figures.update(name=dev.name(), total_gib=_gib(total))
    st.details["info"] = dev.info()
    st.check(is_finite_positive(total), f"total_memory_bytes is a positive number: {total}")
    _known_allocation(st, dev)

    # Small budgets: a bandwidth buffer well above the GPU's L2 and a matmul sweep capped at 10 s.
    bw = measure_bandwidth(dev, mib=256, repeats=5)
    sizes = (1024, 2048, 4096, 8192) if kind != "cpu" else (256, 512, 1024, 2048)
    mm = measure_matmul(dev, sizes=sizes, dtypes=("float32", "bfloat16"), repeats=5, budget_s=10.0)
    print(f"  bandwidth: copy {bw['copy_bandwidth_gbps']:.1f} GB/s, read {bw['read_bandwidth_gbps']:.1f} GB/s "
          f"(256 MiB buffer, median of 5)")
    for r in mm["shapes"]:
        what = f"{r['tflops']:.3f} TFLOP/s ({r['median_ms']:.3f} ms)" if r["tflops"] is not None else f"skipped: {r['skipped']}"
        print(f"  matmul {r['dtype']:8} n={r['size']:5}: {what}")
    st.details.update(bandwidth=bw, matmul=mm)
    st.figures.update(copy_gbps=round(bw["copy_bandwidth_gbps"], 1), fp32_tflops=mm["matmul_fp32_tflops"],
                      bf16_tflops=mm["matmul_bf16_tflops"])
    st.check(is_finite_positive(bw["copy_bandwidth_gbps"]) and is_finite_positive(bw["read_bandwidth_gbps"]),
             "bandwidth figures are positive numbers")
    for short in ("fp32", "bf16"):
        st.check(is_finite_positive(mm[f"matmul_{short}_tflops"]), f"at least one {short} matmul size measured")


# --------------------------------------------------------------------------- 3. model


def step_model(st: Step, state: dict[str, Any]) -> None:
    from ascendeval import builtin_models

    cached = builtin_models.is_built(MODEL)
    path = builtin_models.ensure(MODEL)
    state["model_path"] = str(path)
    facts = json.loads((path / builtin_models.MARKER).read_text(encoding="utf-8"))
    print(f"  builtin:{MODEL} at {path} ({'cached' if cached else 'built now'}; build facts: "
          f"{facts.get('build_s')} s, torch {facts.get('torch')})")
    st.figures.update(model=MODEL, cached=cached)
    st.details.update(path=str(path), build_facts=facts)


def _model_path(state: dict[str, Any]) -> str:
    if "model_path" not in state:
        raise RuntimeError("no model: the 'model' step failed")
    return state["model_path"]


# --------------------------------------------------------------------------- 4. hf engine


def _synced_prefill_s(eng: Any, dev: Any, ids: list[int]) -> float:
    """One teacher-forced forward of the prompt, device synchronised before and after."""
    dev.synchronize()
    t0 = time.perf_counter()
    eng.forward_logits(ids)
    dev.synchronize()
    return time.perf_counter() - t0


def step_hf_engine(st: Step, kind: str, state: dict[str, Any]) -> None:
    import torch

    from ascendeval.device import Device
    from ascendeval.engines.base import Sampling
    from ascendeval.engines.hf_engine import HFEngine
    from ascendeval.metrics import tpot_s

    dev = Device(kind)
    eng = HFEngine(_model_path(state), device=kind, dtype=TARGET_DTYPE)
    try:
        p = next(eng.model.parameters())
        info = eng.info()
        print(f"  loaded in {eng.load_s:.2f} s: {info['num_parameters']:,} parameters, weights {p.dtype} on {p.device}")
        st.check(p.device.type == kind, f"weights on {kind}: {p.device}")
        st.check(p.dtype == getattr(torch, TARGET_DTYPE), f"weights in {TARGET_DTYPE}: {p.dtype}")
        if kind != "cpu":
            held = dev.memory_allocated_bytes()
            st.check(held >= info["weights_bytes"], f"device memory ({held} B) holds the weights ({info['weights_bytes']} B)")
        # Warm-up, not measured: the first call pays kernel selection, cuBLAS/ACL handles, allocator growth.
        eng.generate([GEN_PROMPTS[0]], Sampling(max_tokens=4, ignore_eos=True))
        dev.reset_peak()
        gens = eng.generate(GEN_PROMPTS, Sampling(max_tokens=GEN_TOKENS, temperature=0.0, ignore_eos=True))
        peak = dev.peak_memory_bytes()
        rows = []
        for i, g in enumerate(gens):
            ttft, e2e, n = g.timing.ttft_s, g.timing.e2e_s, g.num_output_tokens
            times = g.extra.get("token_times_s", [])
            row = {"prompt": i, "prompt_tokens": len(g.prompt_token_ids), "output_tokens": n,
                   "ttft_ms": _ms(ttft), "tpot_ms": _ms(tpot_s(e2e, ttft, n)) if ttft is not None else None,
                   "e2e_ms": _ms(e2e), "prefill_synced_ms": _ms(_synced_prefill_s(eng, dev, g.prompt_token_ids)),
                   "text": g.text[:40]}
            rows.append(row)
            st.check(ttft is not None and 0 < ttft < e2e, f"prompt {i}: 0 < ttft < e2e (ttft={ttft}, e2e={e2e:.4f})")
            st.check(n == GEN_TOKENS, f"prompt {i}: {GEN_TOKENS} tokens generated with ignore_eos: {n}")
            st.check(len(times) == n and all(b > a for a, b in zip(times, times[1:])),
                     f"prompt {i}: one increasing timestamp per token ({len(times)} for {n})")
        print(f"  {'#':>2} {'in':>4} {'out':>4} {'TTFT ms':>9} {'TPOT ms':>9} {'E2E ms':>9} {'prefill(sync) ms':>17}  text")
        for r in rows:
            print(f"  {r['prompt']:>2} {r['prompt_tokens']:>4} {r['output_tokens']:>4} {_fmt(r['ttft_ms'], 4):>9} "
                  f"{_fmt(r['tpot_ms'], 4):>9} {_fmt(r['e2e_ms'], 4):>9} {_fmt(r['prefill_synced_ms'], 4):>17}  {r['text']!r}")
        ttfts = [r["ttft_ms"] for r in rows if r["ttft_ms"] is not None]
        tpots = [r["tpot_ms"] for r in rows if r["tpot_ms"] is not None]
        out_tok_s = sum(r["output_tokens"] for r in rows) / (sum(r["e2e_ms"] for r in rows) / 1e3)
        st.figures.update(median_ttft_ms=round(statistics.median(ttfts), 3) if ttfts else None,
                          median_tpot_ms=round(statistics.median(tpots), 3) if tpots else None,
                          output_tok_per_s=round(out_tok_s, 1), peak_gib=_gib(peak))
        st.details.update(engine=info, rows=rows, peak_memory_bytes=peak)
    finally:
        eng.close()


# --------------------------------------------------------------------------- 5. precision


def step_precision(st: Step, kind: str, state: dict[str, Any]) -> None:
    from ascendeval import config
    from ascendeval.sections.precision import steps as precision
    from ascendeval import precision_metrics as pm

    path = _model_path(state)
    cfg = config.parse({
        "model": {"id": f"builtin:{MODEL}", "dtype": TARGET_DTYPE},
        "target": {"engine": "hf", "device": kind},
        "sections": {"precision": {"reference_device": "cpu", "reference_dtype": "float32",
                                   "max_new_tokens": 16, "positions": "all", "max_positions": 64}},
    }, "device_check")
    conf = cfg.sections.precision
    ref = precision.run_reference(cfg, conf, path)
    tgt = precision.open_target(cfg, path)
    try:
        print(f"  reference: {ref.info()}")
        print(f"  target: {tgt.info()}")
        p = next(tgt.model.parameters())
        st.check(p.device.type == kind and str(p.dtype) == f"torch.{TARGET_DTYPE}",
                 f"target weights are {TARGET_DTYPE} on {kind}: {p.dtype} on {p.device}")
        tf = precision.teacher_forced(ref, tgt, conf)
        fr = precision.free_running(ref, tgt, conf)
        v = precision.verdict(tf, fr, conf)
    finally:
        precision.close(ref, tgt)
    # Last prompt token (predicts the first continuation token): the reference report's figure.
    last_pos = {s.prompt.id: len(s.prompt_ids) - 1 for s in ref.sequences}
    last_rows = [r for r in tf.rows if r["position"] == last_pos[r["prompt_id"]]]
    last = pm.summarize_positions(last_rows, pm.SCOPE_FULL)
    s = tf.summary
    keys = ("top1_agreement", "topk_overlap", "mean_cosine", "min_cosine", "mean_mse", "mean_kl", "max_kl",
            "mean_abs_ref_logprob_diff")
    print(f"  {'metric':28} {'all positions':>14} {'last token':>12}")
    for k in keys:
        print(f"  {k:28} {_fmt(s.get(k), 5):>14} {_fmt(last.get(k), 5):>12}")
    print(f"  positions: {s['num_positions']} over {s['num_prompts']} prompts ({len(last_rows)} last-token); "
          f"non-finite target rows: {s['num_nonfinite_positions']}")
    print(f"  free running: {fr.summary}")
    for c in v.checks:
        res = {True: "pass", False: "FAIL", None: "not measured"}[c.passed]
        print(f"  verdict check {c.metric} {_fmt(c.measured, 5)} {c.op} {c.threshold}: {res}")
    print(f"  verdict (default thresholds): {v.passed}")
    st.details.update(teacher_forced=s, last_token=last, free_running=fr.summary, verdict=v.as_dict(),
                      hidden_layers=tf.hidden_layers, per_prompt=tf.per_prompt)
    st.figures.update(top1=s["top1_agreement"], top5=s["topk_overlap"], cos=s["mean_cosine"], kl=s["mean_kl"],
                      last_top1=last["top1_agreement"], last_cos=last["mean_cosine"], verdict=v.passed)
    # What this step asserts: the comparison ran end to end on the device and every value is
    # possible (the package's own range validation). The verdict is reported, not asserted:
    # for an untrained model its thresholds are a finding about bf16 on this device.
    pm.validate_ranges({"teacher_forced": s, "last_token": last, "free_running": fr.summary})
    st.check(s["num_positions"] > 0 and len(last_rows) == len(ref.sequences),
             f"positions compared ({s['num_positions']}), one last-token row per prompt ({len(last_rows)})")
    st.check(s["num_nonfinite_positions"] == 0, f"target logits finite everywhere: {s['num_nonfinite_positions']} rows not")


# --------------------------------------------------------------------------- 6. quality logprob path


def _direct_option_logprob(eng: Any, prompt: str, letter: str) -> float:
    """Sum of the option's token logprobs from one forward pass of prompt + " <letter>"."""
    import torch

    tok = eng.tokenizer()
    ctx = list(tok(prompt)["input_ids"])
    full = list(tok(prompt + " " + letter)["input_ids"])
    if full[: len(ctx)] != ctx:
        full = ctx + list(tok(" " + letter, add_special_tokens=False)["input_ids"])
    lps = torch.log_softmax(eng.forward_logits(full).logits[0].float(), -1)
    return float(sum(lps[j - 1, full[j]] for j in range(len(ctx), len(full))))


def _mc_scores(st: Step, label: str, eng: Any, prompts: list[str]) -> list[list[float]]:
    from ascendeval.sections.quality import steps as quality
    from ascendeval.benchmarks_data import LETTERS

    scores = quality._option_logprob_scores(eng, prompts, [len(it["choices"]) for it in MC_ITEMS])
    flat = [x for s in scores for x in s]
    st.check(all(math.isfinite(x) and x <= 0 for x in flat), f"{label}: every option score is a finite logprob <= 0")
    st.check([len(s) for s in scores] == [len(it["choices"]) for it in MC_ITEMS], f"{label}: one score per option")
    direct = _direct_option_logprob(eng, prompts[0], LETTERS[0])
    diff = abs(direct - scores[0][0])
    st.check(diff <= 1e-4, f"{label}: option score equals the direct forward-pass logprob (|diff| {diff:.2e})")
    return scores


def step_quality(st: Step, kind: str, state: dict[str, Any]) -> None:
    from ascendeval.sections.quality import steps as quality
    from ascendeval.engines.hf_engine import HFEngine

    path = _model_path(state)
    prompts = [quality.mc_prompt(it) for it in MC_ITEMS]
    results = {}
    for label, device, dtype in (("target", kind, TARGET_DTYPE), ("reference", "cpu", "float32")):
        eng = HFEngine(path, device=device, dtype=dtype)
        try:
            results[label] = _mc_scores(st, f"{label} {device}/{dtype}", eng, prompts)
        finally:
            eng.close()
    tgt, ref = results["target"], results["reference"]
    picks = {k: [max(range(len(s)), key=s.__getitem__) for s in v] for k, v in results.items()}
    max_diff = max(abs(a - b) for ts, rs in zip(tgt, ref) for a, b in zip(ts, rs))
    agree = sum(a == b for a, b in zip(picks["target"], picks["reference"])) / len(MC_ITEMS)
    acc = {k: sum(p == it["answer"] for p, it in zip(v, MC_ITEMS)) / len(MC_ITEMS) for k, v in picks.items()}
    for it, ts, rs, pt, pr in zip(MC_ITEMS, tgt, ref, picks["target"], picks["reference"]):
        print(f"  {it['id']:11} target {[round(x, 3) for x in ts]} pick {pt} | reference {[round(x, 3) for x in rs]} "
              f"pick {pr} | gold {it['answer']}")
    print(f"  pick agreement target vs reference {agree:.2f}; max |logprob diff| {max_diff:.4f}; "
          f"accuracy target {acc['target']:.2f}, reference {acc['reference']:.2f} (untrained model)")
    st.figures.update(pick_agreement=agree, max_abs_logprob_diff=round(max_diff, 5))
    st.details.update(items=MC_ITEMS, scores=results, picks=picks, accuracy=acc,
                      method="quality._option_logprob_scores (prompt_logprobs of ' A', ' B', ... after quality.mc_prompt)")


# --------------------------------------------------------------------------- main


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - no torch: the environment step will say so
        return "cpu"


def summary_table(steps: list[Step]) -> str:
    lines = [f"{'step':12} {'status':7} {'seconds':>8}  key figures / error"]
    for s in steps:
        figs = ", ".join(f"{k}={_fmt(v, 5)}" for k, v in s.figures.items())
        lines.append(f"{s.name:12} {s.status:7} {s.seconds:8.1f}  {figs}")
        if s.error:
            lines.append(f"{'':29}error: {s.error[:300]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "npu", "cpu"], default=None,
                    help="device under test (default: cuda when torch sees a GPU, else cpu)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    args = ap.parse_args(argv)
    kind = args.device or default_device()
    print(f"device check on {kind!r}, {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    t0 = time.perf_counter()
    state: dict[str, Any] = {}
    steps = [
        run_step("environment", step_environment, kind),
        run_step("device", step_device, kind),
        run_step("model", step_model, state),
        run_step("hf_engine", step_hf_engine, kind, state),
        run_step("precision", step_precision, kind, state),
        run_step("quality", step_quality, kind, state),
    ]
    total = time.perf_counter() - t0
    print("\n=== summary (device %s, %.1f s)\n%s" % (kind, total, summary_table(steps)))
    failed = [s.name for s in steps if s.status != "ok"]
    if args.json:
        out = {"device": kind, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "argv": sys.argv, "total_s": round(total, 3), "ok": not failed, "steps": [s.as_dict() for s in steps]}
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
