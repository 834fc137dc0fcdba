"""The streaming client against a real HTTP server on 127.0.0.1 with known delays.

Bounds are loose on purpose (the CPU is shared); `benchmarks/loadgen_truth.py` prints the exact
figures. Lower bounds are strict: a client can never see a token before the server sent it.
"""

from __future__ import annotations

import statistics

import pytest

from ascendeval import loadgen
from ascendeval.simserver import SimServer, SimSpec


@pytest.fixture
def sim(request):
    spec = getattr(request, "param", SimSpec())
    with SimServer(spec) as srv:
        yield srv


def test_truth_at_50_req_per_s(sim):
    ep = loadgen.Endpoint(sim.url, "sim-model")
    run = loadgen.run_load(ep, ["hello world"] * 100, 16, loadgen.LoadSpec(request_rate=50, seed=0))
    m = run.metrics()
    assert m["completed_count"] == 100 and m["failed_count"] == 0
    assert 50.0 <= m["median_ttft_ms"] < 60.0
    assert m["median_tpot_ms"] == pytest.approx(10.0, abs=0.6)
    assert m["median_itl_ms"] == pytest.approx(10.0, abs=1.5)
    assert m["median_token_itl_ms"] == pytest.approx(10.0, abs=1.5)  # 1 token per chunk, from usage
    assert m["total_output_tokens"] == 1600
    # the offered load was 50 req/s: 100 requests span ~2 s plus one stream
    assert 1.9 < m["duration_s"] < 4.0
    # client vs what the server actually did (same monotonic clock): TTFT never below server's
    server_ttft = statistics.median((e["writes"][0] - e["arrival"]) * 1000 for e in sim.events[1:])
    assert m["median_ttft_ms"] >= server_ttft
    rows = run.rows(sweep="t")
    assert len(rows) == 101 and rows[0]["warmup"] is True and rows[1]["sweep"] == "t"
    assert all(r["output_tokens"] == 16 and r["usage_reported"] for r in rows)


def test_chat_role_chunk_is_not_the_first_token(sim):
    ep = loadgen.Endpoint(sim.url, "sim-model", api="chat")
    m = loadgen.run_load(ep, ["hi"] * 5, 8, loadgen.LoadSpec(max_concurrency=1)).metrics()
    assert m["completed_count"] == 5
    assert m["min_ttft_ms"] >= 50.0  # the role chunk is written immediately; the first token at 50 ms


@pytest.mark.parametrize("sim", [SimSpec(tokens_per_chunk=4)], indirect=True)
def test_multi_token_chunks_per_chunk_and_per_token_itl(sim):
    with_ids = loadgen.Endpoint(sim.url, "sim-model", request_token_ids=True)
    m = loadgen.run_load(with_ids, ["x"] * 6, 16, loadgen.LoadSpec(max_concurrency=2)).metrics()
    assert m["median_itl_ms"] == pytest.approx(40.0, abs=3.0)  # one gap per chunk of 4 tokens
    assert m["median_token_itl_ms"] == pytest.approx(10.0, abs=1.0)
    assert m["median_tpot_ms"] == pytest.approx(40.0 * 3 / 15, abs=1.0)  # (E2EL-TTFT)/(16-1): 3 gaps of 40 ms
    no_ids = loadgen.Endpoint(sim.url, "sim-model")
    m2 = loadgen.run_load(no_ids, ["x"] * 3, 16, loadgen.LoadSpec(max_concurrency=1)).metrics()
    assert m2["median_token_itl_ms"] is None  # 4 chunks, 16 tokens, no ids: per-token split unknown


@pytest.mark.parametrize("sim", [SimSpec(usage=False)], indirect=True)
def test_missing_usage_is_recorded(sim):
    run = loadgen.run_load(loadgen.Endpoint(sim.url, "sim-model"), ["x"] * 4, 8, loadgen.LoadSpec(max_concurrency=2))
    m = run.metrics()
    assert m["completed_count"] == 4 and m["usage_missing_count"] == 4
    assert m["output_tok_per_s"] is None and m["median_tpot_ms"] is None
    # chunk timing is still measured: the simulator spaces chunks 10 ms apart (a loaded machine adds,
    # never removes, time)
    assert 9.5 <= m["median_itl_ms"] < 50.0
    assert not any(r["usage_reported"] for r in run.rows())


@pytest.mark.parametrize("sim", [SimSpec(fail_every=4)], indirect=True)
def test_failures_are_counted_with_errors(sim):
    run = loadgen.run_load(loadgen.Endpoint(sim.url, "sim-model"), ["x"] * 12, 4,
                           loadgen.LoadSpec(max_concurrency=1), warmup_requests=0)
    m = run.metrics()
    assert m["failed_count"] == 3 and m["completed_count"] == 9
    assert list(m["errors"]) == ["HTTP 500: {\"error\": {\"message\": \"simulated failure\", \"code\": 500}}"]


@pytest.mark.parametrize("sim", [SimSpec(die_after=6)], indirect=True)
def test_server_dying_mid_run_keeps_measured_requests(sim):
    run = loadgen.run_load(loadgen.Endpoint(sim.url, "sim-model"), ["x"] * 20, 8,
                           loadgen.LoadSpec(max_concurrency=2), warmup_requests=1)
    m = run.metrics()
    assert m["num_requests"] == 20
    # 1 warm-up + 4 measured finish; the 7th request kills the server and the one in flight with it
    assert m["completed_count"] == 4 and m["failed_count"] == 20 - m["completed_count"]
    assert m["median_ttft_ms"] >= 50.0  # the requests measured before the crash keep their figures
    assert sum(m["errors"].values()) == m["failed_count"]


def test_unreachable_endpoint_is_one_clear_error():
    with pytest.raises(loadgen.EndpointError, match=r"endpoint http://127.0.0.1:9 unreachable"):
        loadgen.list_models("http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(loadgen.EndpointError, match="warm-up requests .* failed"):
        loadgen.run_load(loadgen.Endpoint("http://127.0.0.1:9", "m", timeout_s=2), ["x"], 4)


def test_bad_inputs():
    ep = loadgen.Endpoint("http://127.0.0.1:9", "m")
    with pytest.raises(ValueError, match="no prompts"):
        loadgen.run_load(ep, [], 4)
    with pytest.raises(ValueError, match="max_concurrency"):
        loadgen.run_load(ep, ["x"], 4, loadgen.LoadSpec(max_concurrency=0))
    with pytest.raises(ValueError, match="max_tokens"):
        loadgen.run_load(ep, ["x"], 0)


def test_warmup_as_load_replays_the_point_untimed(sim):
    """The first point's warm-up is its own load: all warm-up requests in flight together (the
    server meets the point's batch shapes), none of them in the timed figures."""
    ep = loadgen.Endpoint(sim.url, "sim-model")
    run = loadgen.run_load(ep, ["timed"] * 6, 8, loadgen.LoadSpec(), warmup_prompts=["warm"] * 6,
                           warmup_as_load=True)
    assert len(run.warmup) == 6 and all(r.warmup and r.success for r in run.warmup)
    starts = sorted(r.start_s for r in run.warmup)
    ends = sorted(r.start_s + r.e2el_s for r in run.warmup)
    assert starts[-1] < ends[0]  # every warm-up request was in flight at once
    m = run.metrics()
    assert m["warmup_count"] == 6 and m["completed_count"] == 6 and m["num_requests"] == 6
    with pytest.raises(ValueError, match="warmup_as_load needs warmup_prompts"):
        loadgen.run_load(ep, ["x"], 4, warmup_as_load=True)


@pytest.mark.parametrize("transport", ["fast", "aiohttp"])
def test_short_warmups_and_the_pool_sized_for_the_timed_length(sim, transport):
    """Warm-ups of `warmup_max_tokens` tokens (the server saw that max_tokens), the timed
    requests at their own length; at a finite rate the connections opened before the clock are
    sized from the warm-up's pace scaled to the timed length (Little's law), not its short E2EL."""
    ep = loadgen.Endpoint(sim.url, "sim-model", transport=transport)
    run = loadgen.run_load(ep, ["timed"] * 4, 16, loadgen.LoadSpec(request_rate=50, seed=0), warmup_requests=2,
                           warmup_max_tokens=2)
    assert [r.output_tokens for r in run.warmup] == [2, 2] and all(r.warmup for r in run.warmup)
    assert [r.output_tokens for r in run.results] == [16] * 4
    asked = [e["tokens"] for e in sorted(sim.events, key=lambda e: e["received"])]
    assert asked == [2, 2, 16, 16, 16, 16]
    # the pool: a 2-token warm-up (TTFT 50 ms + one 10 ms gap) read as a 16-token request is
    # 50 + 15 x 10 = 200 ms; 50 req/s x (1.5 x 0.2 s + 0.05) + 8 = 25 connections
    warm = run.warmup[0]
    assert loadgen._e2el_at(warm, 16) == pytest.approx(warm.ttft_s + (warm.e2el_s - warm.ttft_s) * 15)
    assert 0.19 < loadgen._e2el_at(warm, 16) < 0.3
    assert loadgen._pool_size(loadgen.LoadSpec(request_rate=50), 100, run.warmup, 16) >= 25
    with pytest.raises(ValueError, match="warmup_max_tokens"):
        loadgen.run_load(ep, ["x"], 4, warmup_max_tokens=0)
