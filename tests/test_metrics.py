"""Pure statistics of metrics.py (performance block): vLLM's definitions on hand-built data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ascendeval import metrics as M
from ascendeval.loadgen import arrival_offsets
from ascendeval.records import validate_metrics


def req(i, ttft, itls, out_tokens, start=0.0, success=True, error=None, chunk_tokens=None):
    r = M.RequestResult(index=i, prompt_tokens=10, max_tokens=out_tokens or 1)
    r.success, r.start_s, r.error = success, start, error
    if success:
        r.ttft_s, r.itl_s = ttft, list(itls)
        r.e2el_s = ttft + sum(itls)
        r.output_tokens = out_tokens
        r.usage_reported = out_tokens is not None
        r.num_chunks = len(itls) + 1
        r.chunk_tokens = chunk_tokens
    return r


def test_percentiles_match_numpy_and_empty_is_none():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    got = M.percentiles(xs, (10, 50, 99, 99.9))
    assert got["p50"] == pytest.approx(np.percentile(xs, 50))
    assert got["p99"] == pytest.approx(np.percentile(xs, 99))
    assert got["p99.9"] == pytest.approx(np.percentile(xs, 99.9))
    assert M.percentiles([], (50, 90)) == {"p50": None, "p90": None}


def test_summarize_scales_to_ms_and_names_keys():
    s = M.summarize([0.050, 0.060, 0.070], "ttft")
    assert s["mean_ttft_ms"] == pytest.approx(60.0)
    assert s["median_ttft_ms"] == pytest.approx(60.0)
    assert s["std_ttft_ms"] == pytest.approx(np.std([50, 60, 70]))
    assert s["p99_ttft_ms"] == pytest.approx(np.percentile([50, 60, 70], 99))
    assert all(v is None for v in M.summarize([], "ttft").values())


def test_tpot_definition():
    assert M.tpot_s(1.05, 0.05, 101) == pytest.approx(0.01)
    assert M.tpot_s(0.05, 0.05, 1) is None  # undefined for one token
    assert M.tpot_s(0.5, 0.05, None) is None  # unknown count is not guessed


def test_per_token_itl_splits_chunk_gaps():
    assert M.per_token_itl_s([0.04, 0.02], [1, 4, 2]) == pytest.approx([0.01] * 4 + [0.01] * 2)
    assert M.per_token_itl_s([0.04], [2, 1]) == pytest.approx([0.0, 0.04])
    assert M.per_token_itl_s([0.04], None) is None
    assert M.per_token_itl_s([0.04], [1]) is None  # counts do not match the chunks


def test_serving_metrics_vllm_definitions():
    rs = [
        req(0, 0.05, [0.01] * 9, 10, start=0.0, chunk_tokens=[1] * 10),
        req(1, 0.07, [0.02] * 4, 5, start=0.5, chunk_tokens=[1] * 5),
        req(2, 0.04, [], 1, start=1.0, chunk_tokens=[1]),  # one token: no TPOT
        req(3, None, [], None, start=1.2, success=False, error="HTTP 500: boom"),
        req(4, None, [], None, start=1.3, success=False, error="HTTP 500: boom"),
    ]
    m = M.serving_metrics(rs, duration_s=2.0, slo_ms={"ttft": 60, "tpot": 15})
    assert m["completed_count"] == 3 and m["failed_count"] == 2
    assert m["failed_rate"] == pytest.approx(0.4)
    assert m["errors"] == {"HTTP 500: boom": 2}
    assert m["total_output_tokens"] == 16
    assert m["output_tok_per_s"] == pytest.approx(8.0)
    assert m["total_tok_per_s"] == pytest.approx((16 + 30) / 2.0)
    assert m["request_throughput_req_per_s"] == pytest.approx(1.5)
    # TPOT only from requests with > 1 token: 10 ms and 20 ms
    assert m["mean_tpot_ms"] == pytest.approx(15.0)
    assert m["median_ttft_ms"] == pytest.approx(50.0)
    assert m["mean_itl_ms"] == pytest.approx((9 * 10 + 4 * 20) / 13)
    assert m["median_token_itl_ms"] == pytest.approx(10.0)
    # goodput: req0 (50 ms, 10 ms) and req2 (40 ms, tpot counted as 0) meet both SLOs, req1 misses TTFT
    assert m["good_count"] == 2 and m["goodput_req_per_s"] == pytest.approx(1.0)
    assert m["peak_concurrent_requests_count"] >= 2
    assert validate_metrics(m) == []


def test_usage_missing_means_not_measured_not_zero():
    rs = [req(0, 0.05, [0.01] * 3, None), req(1, 0.05, [0.01] * 3, None)]
    m = M.serving_metrics(rs, duration_s=1.0)
    assert m["usage_missing_count"] == 2
    assert m["output_tok_per_s"] is None and m["total_output_tokens"] is None
    assert m["mean_tpot_ms"] is None  # needs a token count
    assert m["median_itl_ms"] == pytest.approx(10.0)  # chunk timing is still measured
    assert m["goodput_req_per_s"] is None  # no SLO given


def test_peak_output_throughput_buckets():
    # 10 chunks in second 0 (request 0), 15 in second 1 (request 1, sent at 0.5 s, first chunk at 1.1 s),
    # 3 in second 2 (request 2, a slow one that keeps the run going past 2 s)
    rs = [req(0, 0.1, [0.05] * 9, 10, start=0.0), req(1, 0.6, [0.02] * 14, 15, start=0.5),
          req(2, 0.05, [2.0, 0.1], 3, start=0.0)]
    p = M.peak_output_throughput(rs)
    assert p["peak_output_tok_per_s"] == 15.0
    assert p["peak_concurrent_requests_count"] == 3  # all in flight during second 0


def test_peak_output_throughput_of_a_run_shorter_than_its_window_is_not_measured():
    # a 0.7 s run: vLLM's method would report all 20 tokens as the "peak" 20 tok/s, below the
    # run's own 28.6 tok/s average; here the peak is not measured
    rs = [req(0, 0.1, [0.03] * 19, 20, start=0.0)]
    assert M.peak_output_throughput(rs)["peak_output_tok_per_s"] is None


def test_goodput_rejects_unknown_slo():
    with pytest.raises(ValueError, match="allowed: ttft, tpot, e2el"):
        M.goodput([], 1.0, {"latency": 10})


def test_latency_summary_and_empty():
    s = M.latency_summary([1.0, 2.0, 3.0, 4.0])
    assert s["avg_latency_s"] == pytest.approx(2.5)
    assert s["p50_latency_s"] == pytest.approx(2.5)
    assert s["p10_latency_s"] <= s["p25_latency_s"] <= s["p99_latency_s"]
    with pytest.raises(ValueError, match="iters"):
        M.latency_summary([])


def test_throughput_summary():
    t = M.throughput_summary(10, 1000, 500, 2.0)
    assert t["request_throughput_req_per_s"] == 5.0
    assert t["total_tok_per_s"] == 750.0 and t["output_tok_per_s"] == 250.0
    with pytest.raises(ValueError):
        M.throughput_summary(1, 1, 1, 0.0)


def test_roofline_formulas():
    d = M.decode_bandwidth_utilization(1e9, 1e4, 2, 100, 10.0, 100e9)
    assert d["decode_bytes_per_step"] == pytest.approx(1e9 + 2e6)
    assert d["decode_bandwidth_utilization"] == pytest.approx((1e9 + 2e6) * 10 / 100e9)
    p = M.prefill_flops_utilization(1e8, 4, 256, 1000, 1, 0.5, 1e12)
    flops = 2 * 1e8 * 1000 + 2 * 4 * 1000 * 1000 * 256
    assert p["prefill_flops"] == pytest.approx(flops)
    assert p["prefill_flops_utilization"] == pytest.approx(flops / 0.5 / 1e12)


def test_arrival_offsets_rate_and_burstiness():
    t = arrival_offsets(2000, 50.0, 1.0, seed=3)
    assert t[-1] == pytest.approx(2000 / 50.0)  # normalised: the run offers exactly 50 req/s
    gaps = np.diff(t)
    assert np.all(gaps >= 0)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, rel=0.1)  # Poisson: CV 1
    regular = np.diff(arrival_offsets(2000, 50.0, 16.0, seed=3))
    assert np.std(regular) / np.mean(regular) == pytest.approx(0.25, rel=0.15)  # CV 1/sqrt(16)
    assert np.all(arrival_offsets(5, math.inf) == 0)
    with pytest.raises(ValueError, match="request_rate"):
        arrival_offsets(5, 0.0)


def test_arrival_offsets_are_vllm_bench_serve_schedule():
    # vllm/benchmarks/serve.py: np.random.seed(args.seed), then per request
    # np.random.gamma(shape=burstiness, scale=1/(rate*burstiness)), cumulated, rescaled to n/rate.
    n, rate, burst, seed = 40, 4.0, 0.5, 7
    np.random.seed(seed)
    d = np.cumsum([np.random.gamma(shape=burst, scale=1.0 / (rate * burst)) for _ in range(n)])
    d = d * (n / rate) / d[-1]
    assert np.allclose(arrival_offsets(n, rate, burst, seed=seed), d, rtol=0, atol=1e-12)
