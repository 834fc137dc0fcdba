"""Precision comparison at real vocabulary size: time and peak memory.

Default: builtin:qwen2-0.5b-shape (Qwen2-0.5B config, vocab 151,936, random weights), reference
transformers float32 on CPU, target transformers bfloat16 on CPU, 8 prompts x 64 teacher-forced
positions each (full-vocabulary KL/cosine/MSE at every position, hidden states on).

Memory must be bounded by what is kept (per-position scalars, per-layer running sums), not by
vocab x positions x prompts (8 x 64 x 151,936 fp32 logits would be 311 MB per side). The script
prints RSS after loading both models and the peak RSS during the comparison (sampled every 20 ms
with psutil), so the comparison's own footprint is the difference.

    python benchmarks/bench_precision.py [--model builtin:qwen2-0.5b-shape] [--prompts 8]
        [--positions 64] [--free-running]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import psutil

from ascendeval import config, paths, precision


class PeakRSS:
    """Sample this process's RSS in a thread; .peak is the maximum seen."""

    def __init__(self, interval_s: float = 0.02):
        self.proc = psutil.Process()
        self.interval_s = interval_s
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def mib(x: float) -> str:
    return f"{x / 2**20:,.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:qwen2-0.5b-shape")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--positions", type=int, default=64, help="teacher-forced positions per prompt")
    ap.add_argument("--target-dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--free-running", action="store_true", help="also time free-running greedy generation")
    args = ap.parse_args()
    paths.set_engine_cache_env()
    cfg = config.parse({
        "model": {"id": args.model, "dtype": args.target_dtype}, "target": {"engine": "hf", "device": "cpu"},
        "sections": {"precision": {"max_prompts": args.prompts, "max_new_tokens": args.positions,
                                   "positions": "continuation", "max_positions": args.positions,
                                   "free_running": args.free_running}},
    }, "bench_precision")
    conf = cfg.sections.precision
    proc = psutil.Process()
    t = time.perf_counter()
    path = precision.model_path(cfg)
    print(f"model {args.model} at {path} (resolve/build {time.perf_counter() - t:.1f} s)")

    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    ref = precision.run_reference(cfg, conf, path)
    print(f"reference fp32: load {ref.load_s:.1f} s, greedy {sum(len(s.continuation_ids) for s in ref.sequences)} "
          f"tokens in {ref.generate_s:.1f} s")
    tgt = precision.open_target(cfg, path)
    vocab = tgt.model.config.vocab_size
    rss_loaded = proc.memory_info().rss
    print(f"target {args.target_dtype} loaded; RSS with both models: {mib(rss_loaded)} (was {mib(rss0)})")

    with PeakRSS() as peak:
        t = time.perf_counter()
        tf = precision.teacher_forced(ref, tgt, conf)
        tf_s = time.perf_counter() - t
    s = tf.summary
    kept = len(json.dumps(tf.rows)) + len(json.dumps(tf.hidden_layers))
    print(f"teacher-forced: {s['num_prompts']} prompts x {s['num_positions'] // max(1, s['num_prompts'])} positions "
          f"= {s['num_positions']} positions, vocab {vocab:,}, in {tf_s:.1f} s "
          f"({tf_s / max(1, s['num_positions']) * 1000:.1f} ms/position, both forwards + metrics)")
    print(f"peak RSS during comparison: {mib(peak.peak)}; above the loaded models: {mib(peak.peak - rss_loaded)}; "
          f"all logits of all prompts would be {mib(2 * s['num_positions'] * vocab * 4)} (fp32, both sides)")
    print(f"kept: {len(tf.rows)} position rows + {len(tf.hidden_layers)} layer rows = {kept / 1024:.0f} KiB as JSON")
    print("summary: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()))
    if args.free_running:
        t = time.perf_counter()
        fr = precision.free_running(ref, tgt, conf)
        print(f"free-running: {time.perf_counter() - t:.1f} s, {fr.summary}")
    precision.close(ref, tgt)


if __name__ == "__main__":
    main()
