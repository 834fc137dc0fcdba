"""Precision comparison at real vocabulary size: time and peak memory, and whether memory grows
with the number of prompts.

Default: builtin:qwen2-0.5b-shape (Qwen2-0.5B config, vocab 151,936, random weights), reference
transformers float32 on CPU, target transformers bfloat16 on CPU, teacher-forced comparison of
the last 64 positions of each of 8 prompts (full-vocabulary KL/cosine/MSE at every position,
hidden states on). The comparison is run twice on the same loaded models, first on 2 prompts and
then on 8, and the peak above the loaded models is printed for each: equal peaks mean memory is
bounded by what is kept (per-position scalars, per-layer running sums), not by
vocab x positions x prompts.

Prompts: each of the shipped precision prompts followed by the others in turn (mixed
English/Chinese/code/arithmetic text, ~115 tokens), so 64 positions per prompt need only a short
greedy continuation from the (slow, fp32) reference; --new-tokens sets its length.

Memory is read from /proc via psutil, sampled every 10 ms, split into anonymous memory (what the
code allocates) and file-backed pages (safetensors weights that transformers maps from disk and
that count in RSS only once a forward pass touches them: the bf16 target's weights show up there
on its first forward). CPU time on a shared machine is noisy: repeat before comparing timings.

    python benchmarks/bench_precision.py [--model builtin:qwen2-0.5b-shape] [--prompts 2,8]
        [--positions 64] [--new-tokens 8] [--target-dtype bfloat16] [--free-running]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import psutil

from ascendeval import config, paths
from ascendeval.sections.precision import steps as precision
from ascendeval.sections.precision.config import PrecisionConfig


def mem() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of this process. psutil's `shared` on Linux is
    RssFile + RssShmem from /proc/self/status."""
    m = psutil.Process().memory_info()
    return m.rss - m.shared, m.shared


class PeakMem:
    """Sample anonymous and total RSS in a thread; keeps the maxima seen."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.anon, self.file = mem()
        self.total = self.anon + self.file
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        a, f = mem()
        self.anon, self.file, self.total = max(self.anon, a), max(self.file, f), max(self.total, a + f)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakMem":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self._sample()


def mib(x: float) -> str:
    return f"{x / 2**20:,.0f} MiB"


def long_prompts(n: int) -> list[str]:
    texts = [p.text for p in precision.load_prompts(PrecisionConfig())]
    return [" ".join(texts[i % len(texts):] + texts[: i % len(texts)]) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:qwen2-0.5b-shape")
    ap.add_argument("--prompts", default="2,8", help="comma-separated prompt counts, run in order on the same models")
    ap.add_argument("--positions", type=int, default=64, help="teacher-forced positions per prompt (the last N)")
    ap.add_argument("--new-tokens", type=int, default=8, help="reference greedy continuation length")
    ap.add_argument("--target-dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--free-running", action="store_true", help="also time free-running greedy generation")
    args = ap.parse_args()
    counts = [int(x) for x in args.prompts.split(",")]
    paths.set_engine_cache_env()
    cfg = config.parse({
        "model": {"id": args.model, "dtype": args.target_dtype}, "target": {"engine": "hf", "device": "cpu"},
        "sections": {"precision": {"prompts": long_prompts(max(counts)), "max_new_tokens": args.new_tokens,
                                   "positions": "all", "max_positions": args.positions,
                                   "free_running": args.free_running}},
    }, "bench_precision")
    conf = cfg.sections.precision
    t = time.perf_counter()
    path = precision.model_path(cfg)
    print(f"model {args.model} at {path} (resolve/build {time.perf_counter() - t:.1f} s)")

    a0, f0 = mem()
    ref = precision.run_reference(cfg, conf, path)
    print(f"reference fp32: load {ref.load_s:.1f} s, greedy {sum(len(s.continuation_ids) for s in ref.sequences)} "
          f"tokens in {ref.generate_s:.1f} s; sequence lengths {[len(s.ids) for s in ref.sequences]}")
    tgt = precision.open_target(cfg, path)
    vocab = tgt.model.config.vocab_size
    a1, f1 = mem()
    print(f"target {args.target_dtype} loaded. memory with both models: anon {mib(a1)} + file-backed {mib(f1)} "
          f"(before: anon {mib(a0)} + file {mib(f0)})")

    for n in counts:
        ref_n = precision.Reference(engine=ref.engine, sequences=ref.sequences[:n], device=ref.device,
                                    dtype=ref.dtype, load_s=ref.load_s, generate_s=ref.generate_s)
        with PeakMem() as peak:
            t = time.perf_counter()
            tf = precision.teacher_forced(ref_n, tgt, conf)
            tf_s = time.perf_counter() - t
        s = tf.summary
        kept = len(json.dumps(tf.rows)) + len(json.dumps(tf.per_prompt)) + len(json.dumps(tf.hidden_layers))
        print(f"\n== {s['num_prompts']} prompts x {s['num_positions'] // max(1, s['num_prompts'])} positions "
              f"= {s['num_positions']} positions, vocab {vocab:,}")
        print(f"time: {tf_s:.1f} s ({tf_s / max(1, s['num_positions']) * 1000:.0f} ms/position: both forwards "
              f"with hidden states + full-vocab metrics)")
        print(f"peak above the loaded models: anon +{mib(peak.anon - a1)}, file-backed +{mib(peak.file - f1)}, "
              f"total RSS +{mib(peak.total - a1 - f1)} (peak RSS {mib(peak.total)})")
        print(f"for scale: all logits of these positions would be {mib(2 * s['num_positions'] * vocab * 4)} "
              f"(fp32, both sides); kept: {len(tf.rows)} position rows + {len(tf.hidden_layers)} layer rows "
              f"= {kept / 1024:.0f} KiB as JSON")
        print("summary: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()))
    if args.free_running:
        t = time.perf_counter()
        fr = precision.free_running(ref, tgt, conf)
        print(f"free-running: {time.perf_counter() - t:.1f} s, {fr.summary}")
    precision.close(ref, tgt)


if __name__ == "__main__":
    main()
