"""Pure statistics shared by the sections: no I/O, no engines, no clocks.

Each section keeps its functions in its own headed block below. Inputs are plain numbers or
dataclasses; outputs are plain dicts whose keys carry their unit (`p99_ttft_ms`), where `None`
means "not measured" (empty sample), never 0.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

# =========================================================================== performance
# Definitions follow vLLM's `vllm/benchmarks/serve.py::calculate_metrics` so that figures are
# comparable with `vllm bench serve` on the same server:
#   TTFT  = time from sending the request to the first chunk that carries generated output
#   ITL   = gaps between consecutive output-carrying chunks (per chunk, as vLLM reports it)
#   TPOT  = (E2EL - TTFT) / (output_tokens - 1), only for requests with > 1 output token;
#           output_tokens comes from the server's `usage` (not a re-tokenisation of the text)
#   E2EL  = time from sending the request to the last output-carrying chunk
# Percentiles use numpy's default linear interpolation, std is the population std (np.std),
# both as in vLLM.

DEFAULT_PERCENTILES: tuple[float, ...] = (50, 90, 95, 99)
LATENCY_PERCENTILES: tuple[float, ...] = (10, 25, 50, 75, 90, 99)  # `vllm bench latency` prints these


def _pct_key(p: float) -> str:
    """50 -> 'p50', 99.9 -> 'p99.9' (the record validator parses both)."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p:g}"


def percentiles(values: Iterable[float], ps: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, float | None]:
    """{'p50': .., 'p90': ..}; every value None for an empty sample."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return {_pct_key(p): None for p in ps}
    return {_pct_key(p): float(np.percentile(arr, p)) for p in ps}


def summarize(
    values: Iterable[float],
    name: str,
    unit: str = "ms",
    scale: float = 1000.0,
    ps: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, float | None]:
    """mean/median/std/min/max/percentiles of `values` (seconds by default) with unit-suffixed keys.

    summarize([0.05, 0.06], "ttft") -> {'mean_ttft_ms': 55.0, 'median_ttft_ms': 55.0, ...}
    """
    arr = np.asarray(list(values), dtype=float) * scale
    out: dict[str, float | None] = {}
    empty = arr.size == 0
    out[f"mean_{name}_{unit}"] = None if empty else float(np.mean(arr))
    out[f"median_{name}_{unit}"] = None if empty else float(np.median(arr))
    out[f"std_{name}_{unit}"] = None if empty else float(np.std(arr))
    out[f"min_{name}_{unit}"] = None if empty else float(np.min(arr))
    out[f"max_{name}_{unit}"] = None if empty else float(np.max(arr))
    for key, v in percentiles(arr, ps).items():
        out[f"{key}_{name}_{unit}"] = v
    return out


def tpot_s(e2el_s: float, ttft_s: float, output_tokens: int | None) -> float | None:
    """Time per output token after the first; None when it is undefined (<= 1 token or unknown)."""
    if output_tokens is None or output_tokens <= 1:
        return None
    return (e2el_s - ttft_s) / (output_tokens - 1)


def per_token_itl_s(chunk_itls_s: Sequence[float], chunk_tokens: Sequence[int] | None) -> list[float] | None:
    """Split each chunk gap evenly over the tokens that chunk delivered.

    `chunk_tokens[i]` is the token count of output chunk i (chunk 0 is the TTFT chunk, so gap i
    belongs to chunk i + 1). A chunk carrying k tokens contributes k gaps of gap/k: the best a
    client can know without server-side timestamps. Returns None when the counts are unknown.
    """
    if chunk_tokens is None or len(chunk_tokens) != len(chunk_itls_s) + 1:
        return None
    out: list[float] = []
    # tokens that arrived together with the first chunk beyond the first token get a 0 gap
    out.extend([0.0] * max(int(chunk_tokens[0]) - 1, 0))
    for gap, k in zip(chunk_itls_s, chunk_tokens[1:]):
        k = int(k)
        if k <= 0:
            continue  # an output chunk without a token (e.g. text flushed late): no token gap
        out.extend([gap / k] * k)
    return out


@dataclass
class RequestResult:
    """One request of a serving benchmark, as measured by the client (times in seconds).

    `start_s` is on the client's monotonic clock (time.perf_counter), so rows from one run can be
    placed on one timeline; only differences are meaningful.
    """

    index: int
    prompt_tokens: int | None
    max_tokens: int
    success: bool = False
    start_s: float = 0.0
    ttft_s: float | None = None
    e2el_s: float | None = None
    itl_s: list[float] = field(default_factory=list)  # per output chunk after the first
    chunk_tokens: list[int] | None = None  # tokens per output chunk, when the server says
    output_tokens: int | None = None  # from usage.completion_tokens
    usage_prompt_tokens: int | None = None  # from usage.prompt_tokens
    # from usage.prompt_tokens_details.cached_tokens: prompt tokens the server took from its prefix
    # cache (vLLM reports it with --enable-prompt-tokens-details); None: not reported
    cached_tokens: int | None = None
    usage_reported: bool = False
    num_chunks: int = 0
    output_text_chars: int = 0
    # what was generated, for the correctness guard (output_guard): never written to the rows
    output_text: str = ""
    output_token_ids: list[int] | None = None  # vLLM's return_token_ids, when asked for and sent
    prompt_token_ids: list[int] | None = None  # ditto (the prompt as the server tokenized it)
    error: str | None = None
    http_status: int | None = None
    response_id: str | None = None  # the server's id of the completion (correlates with server logs)
    warmup: bool = False
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def tpot_s(self) -> float | None:
        if not self.success or self.e2el_s is None or self.ttft_s is None:
            return None
        return tpot_s(self.e2el_s, self.ttft_s, self.output_tokens)

    @property
    def per_token_itl_s(self) -> list[float] | None:
        return per_token_itl_s(self.itl_s, self.chunk_tokens) if self.success else None

    def row(self) -> dict[str, Any]:
        """The raw JSON row saved to records/performance.requests.jsonl (times in ms)."""
        ms = lambda v: None if v is None else v * 1000.0  # noqa: E731
        return {
            "index": self.index,
            "warmup": self.warmup,
            "success": self.success,
            "error": self.error,
            "http_status": self.http_status,
            "response_id": self.response_id,
            "prompt_tokens": self.usage_prompt_tokens if self.usage_prompt_tokens is not None else self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "output_tokens": self.output_tokens,
            "usage_reported": self.usage_reported,
            "num_chunks": self.num_chunks,
            "start_s": self.start_s,
            "ttft_ms": ms(self.ttft_s),
            "e2el_ms": ms(self.e2el_s),
            "tpot_ms": ms(self.tpot_s),
            "itl_ms": [g * 1000.0 for g in self.itl_s],
            "chunk_tokens": self.chunk_tokens,
            "cached_tokens": self.cached_tokens,
            **self.tags,
        }


def serving_metrics(
    results: Sequence[RequestResult],
    duration_s: float,
    slo_ms: dict[str, float] | None = None,
    ps: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """vLLM-style summary of one serving run (warm-up rows must be excluded by the caller).

    Args:
        results: measured requests (successful and failed).
        duration_s: wall time from the first request sent to the last one finished.
        slo_ms: goodput SLOs, keys among 'ttft', 'tpot', 'e2el' (milliseconds). A request is
            "good" when it meets all of them; a 1-token request has TPOT 0 for this test (vLLM).
        ps: percentiles to report.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    ok = [r for r in results if r.success]
    failed = [r for r in results if not r.success]
    missing_usage = sum(1 for r in ok if r.output_tokens is None)
    out_tokens = [r.output_tokens or 0 for r in ok]
    in_tokens = [
        (r.usage_prompt_tokens if r.usage_prompt_tokens is not None else (r.prompt_tokens or 0)) for r in ok
    ]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    e2els = [r.e2el_s for r in ok if r.e2el_s is not None]
    tpots = [t for t in (r.tpot_s for r in ok) if t is not None]
    itls = [g for r in ok for g in r.itl_s]
    tok_itls: list[float] | None = []
    for r in ok:
        per_tok = r.per_token_itl_s
        if per_tok is None:
            tok_itls = None
            break
        tok_itls.extend(per_tok)

    m: dict[str, Any] = {
        "num_requests": len(results),
        "completed_count": len(ok),
        "failed_count": len(failed),
        "failed_rate": (len(failed) / len(results)) if results else None,
        "errors": dict(Counter((r.error or "unknown error").splitlines()[0][:200] for r in failed)),
        "usage_missing_count": missing_usage,
        "duration_s": duration_s,
        "total_input_tokens": int(sum(in_tokens)),
        "total_output_tokens": None if missing_usage else int(sum(out_tokens)),
        "request_throughput_req_per_s": len(ok) / duration_s,
        "output_tok_per_s": None if missing_usage else sum(out_tokens) / duration_s,
        "total_tok_per_s": None if missing_usage else (sum(out_tokens) + sum(in_tokens)) / duration_s,
    }
    m.update(summarize(ttfts, "ttft", ps=ps))
    m.update(summarize(tpots, "tpot", ps=ps))
    m.update(summarize(itls, "itl", ps=ps))
    m.update(summarize(tok_itls or [], "token_itl", ps=ps))
    m.update(summarize(e2els, "e2el", ps=ps))
    peak = peak_output_throughput(ok)
    m["peak_output_tok_per_s"] = peak["peak_output_tok_per_s"] if not missing_usage else None
    m["peak_concurrent_requests_count"] = peak["peak_concurrent_requests_count"]
    m.update(goodput(ok, duration_s, slo_ms))
    return m


def goodput(ok: Sequence[RequestResult], duration_s: float, slo_ms: dict[str, float] | None) -> dict[str, Any]:
    """Requests/s that met every SLO (vLLM's definition); None when no SLO is set."""
    slo = {k: v for k, v in (slo_ms or {}).items() if v is not None}
    bad = set(slo) - {"ttft", "tpot", "e2el"}
    if bad:
        raise ValueError(f"unknown SLO key(s) {sorted(bad)}; allowed: ttft, tpot, e2el")
    if not slo:
        return {"goodput_req_per_s": None, "good_count": None}
    good = 0
    for r in ok:
        values = {
            "ttft": r.ttft_s,
            "tpot": r.tpot_s if r.tpot_s is not None else 0.0,  # vLLM: tpot of a 1-token request counts as 0
            "e2el": r.e2el_s,
        }
        if all(values[k] is not None and values[k] * 1000.0 <= v for k, v in slo.items()):
            good += 1
    return {"goodput_req_per_s": good / duration_s, "good_count": good}


PEAK_MIN_RUN_S = 2.0  # shortest run whose 1-second-bucket peak is reported


def peak_output_throughput(ok: Sequence[RequestResult]) -> dict[str, float | int | None]:
    """Highest output tokens in any 1-second bucket, and most requests in flight (vLLM's method).

    Each output chunk is placed on the timeline at start + TTFT + cumulative ITL and counted as
    one token per chunk (as vLLM does; with chunk token counts known, their counts are used).
    A run shorter than PEAK_MIN_RUN_S has no peak (not measured): its few 1-second buckets are
    mostly partly empty, so vLLM's figure for it is the run's token count per bucket, printed
    below the run's own average rate (a 0.7 s run: every token in one bucket).
    """
    if not ok:
        return {"peak_output_tok_per_s": None, "peak_concurrent_requests_count": None}
    t0 = min(r.start_s for r in ok)
    t_end = max(r.start_s + (r.e2el_s or 0.0) for r in ok)
    n_bins = int(math.ceil(t_end - t0)) + 1
    tokens = np.zeros(n_bins)
    conc = np.zeros(n_bins)
    for r in ok:
        if r.ttft_s is None:
            continue
        t = r.start_s + r.ttft_s
        times = [t]
        for gap in r.itl_s:
            t += gap
            times.append(t)
        weights = r.chunk_tokens if r.chunk_tokens and len(r.chunk_tokens) == len(times) else [1] * len(times)
        for tt, w in zip(times, weights):
            b = int(tt - t0)
            if 0 <= b < n_bins:
                tokens[b] += w
        for b in range(int(r.start_s - t0), int(r.start_s + (r.e2el_s or 0.0) - t0) + 1):
            if 0 <= b < n_bins:
                conc[b] += 1
    peak = float(tokens.max()) if t_end - t0 >= PEAK_MIN_RUN_S else None
    return {"peak_output_tok_per_s": peak, "peak_concurrent_requests_count": int(conc.max())}


def latency_summary(latencies_s: Sequence[float], ps: Sequence[float] = LATENCY_PERCENTILES) -> dict[str, Any]:
    """`vllm bench latency` summary of per-iteration batch latencies: avg and p10..p99 in seconds."""
    arr = np.asarray(latencies_s, dtype=float)
    if arr.size == 0:
        raise ValueError("no measured iterations: iters must be >= 1")
    out: dict[str, Any] = {"iters_count": int(arr.size), "avg_latency_s": float(arr.mean()),
                           "std_latency_s": float(arr.std()), "min_latency_s": float(arr.min()),
                           "max_latency_s": float(arr.max())}
    for key, v in percentiles(arr, ps).items():
        out[f"{key}_latency_s"] = v
    return out


def tokens_per_s(tokens: int | float, seconds: float) -> float | None:
    return None if seconds <= 0 else tokens / seconds


def throughput_summary(num_requests: int, prompt_tokens: int, output_tokens: int, elapsed_s: float) -> dict[str, Any]:
    """`vllm bench throughput` figures for one timed batch."""
    if elapsed_s <= 0:
        raise ValueError(f"elapsed_s must be > 0, got {elapsed_s}")
    return {
        "elapsed_s": elapsed_s,
        "num_requests": num_requests,
        "total_input_tokens": prompt_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput_req_per_s": num_requests / elapsed_s,
        "total_tok_per_s": (prompt_tokens + output_tokens) / elapsed_s,
        "output_tok_per_s": output_tokens / elapsed_s,
    }


def relative_delta(new: float | None, base: float | None) -> float | None:
    """(new - base) / base; None when either is missing or the base is 0."""
    if new is None or base is None or base == 0:
        return None
    return (new - base) / base


# Roofline. Decode of one token reads every weight once (plus the KV cache of the sequences), so
# its speed is bounded by memory bandwidth: MBU = bytes moved per second / measured bandwidth.
# Prefill is compute bound: a forward pass over T tokens costs ~2 * N_params * T FLOPs (matmuls;
# attention's T^2 term added separately), MFU = achieved FLOP/s / measured matmul FLOP/s.


def decode_bandwidth_utilization(
    weight_bytes: float,
    kv_bytes_per_token: float,
    batch_size: int,
    mean_context_tokens: float,
    decode_steps_per_s: float,
    bandwidth_bytes_per_s: float,
) -> dict[str, float | None]:
    """Model bandwidth utilisation of decode.

    bytes per step = weights + batch_size * mean_context_tokens * kv_bytes_per_token;
    achieved = bytes per step * steps per second; MBU = achieved / measured bandwidth.
    """
    step_bytes = weight_bytes + batch_size * mean_context_tokens * kv_bytes_per_token
    achieved = step_bytes * decode_steps_per_s
    return {
        "decode_bytes_per_step": step_bytes,
        "decode_achieved_gbps": achieved / 1e9,
        "decode_bandwidth_utilization": (achieved / bandwidth_bytes_per_s) if bandwidth_bytes_per_s > 0 else None,
    }


def prefill_flops_utilization(
    num_params: float,
    num_layers: int,
    hidden_size: int,
    prompt_tokens: int,
    batch_size: int,
    prefill_s: float,
    matmul_flops_per_s: float,
) -> dict[str, float | None]:
    """Model FLOPs utilisation of prefill.

    FLOPs = batch * (2 * N_params * T + 2 * n_layers * T^2 * hidden) (linear layers + causal
    attention scores and weighted sum: 4*T^2*h per layer halved by the causal mask).
    """
    t = prompt_tokens
    flops = batch_size * (2.0 * num_params * t + 2.0 * num_layers * t * t * hidden_size)
    achieved = flops / prefill_s if prefill_s > 0 else None
    return {
        "prefill_flops": flops,
        "prefill_achieved_tflops_per_s": None if achieved is None else achieved / 1e12,
        "prefill_flops_utilization": (achieved / matmul_flops_per_s) if achieved and matmul_flops_per_s > 0 else None,
    }


# ==== shared by smoke / features / quality: greedy identity checks


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token (a length difference counts), or None if identical."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
