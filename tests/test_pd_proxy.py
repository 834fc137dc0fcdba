"""The disaggregated-prefill proxy against two servers with known timing (simserver): the
request goes to P with max_tokens=1 and the prefill kv_transfer_params, P's answer's
kv_transfer_params go to D, D's stream comes back, and the parts are timed."""

from __future__ import annotations

import pytest

from ascendeval import loadgen
from ascendeval.pd_proxy import PDProxy
from ascendeval.simserver import SimServer, SimSpec


@pytest.fixture
def servers():
    p = SimServer(SimSpec(ttft_s=0.080, tpot_s=0.010)).start()
    d = SimServer(SimSpec(ttft_s=0.020, tpot_s=0.010)).start()
    yield p, d
    p.stop()
    d.stop()


def test_request_runs_on_p_then_d_with_the_hand_off(servers):
    p, d = servers
    with PDProxy(p.url, d.url) as url:
        ep = loadgen.Endpoint(url, "sim")
        res = loadgen.run_load(ep, [[1, 2, 3, 4]] * 3, 8, loadgen.LoadSpec(max_concurrency=1), warmup_requests=0)
    assert all(r.success for r in res.results) and [r.output_tokens for r in res.results] == [8, 8, 8]
    # P saw max_tokens=1, not streamed, asking to hand its KV to a remote decoder
    assert [e["tokens"] for e in p.events] == [1, 1, 1]
    assert all(e["kv_transfer_params"]["do_remote_decode"] is True for e in p.events)
    # D got what P returned
    assert [e["kv_transfer_params"]["remote_block_ids"] for e in d.events] == [[1], [2], [3]]
    # client TTFT = P's prefill (80 ms) + D's first token (20 ms) + proxy/HTTP overhead
    for r in res.results:
        assert 0.100 <= r.ttft_s < 0.200


def test_parts_are_timed_and_the_text_kept(servers):
    p, d = servers
    proxy = PDProxy(p.url, d.url)
    url = proxy.start()
    try:
        loadgen.run_load(loadgen.Endpoint(url, "sim"), [[1, 2]], 5, loadgen.LoadSpec(max_concurrency=1),
                         warmup_requests=0)
    finally:
        proxy.stop()
    (row,) = proxy.timings
    assert row["error"] is None and row["kv_transfer_params_returned"] is True
    assert 80 <= row["prefill_ms"] < 150
    assert 20 <= row["decode_first_token_ms"] < 90
    assert row["total_ms"] >= row["prefill_ms"] + 20 + 4 * 10
    assert row["text"] == d.spec.token_text * 5


def test_prefill_failure_is_passed_back(servers):
    p, d = servers
    p.spec.fail_every = 1
    proxy = PDProxy(p.url, d.url)
    url = proxy.start()
    try:
        res = loadgen.run_load(loadgen.Endpoint(url, "sim"), [[1]], 4, loadgen.LoadSpec(max_concurrency=1),
                               warmup_requests=0)
    finally:
        proxy.stop()
    assert not res.results[0].success and res.results[0].http_status == 500
    assert proxy.timings[0]["error"].startswith("prefill server answered 500")
    assert d.events == []  # D never ran a request whose prefill failed
