"""The serving client's own error: its self-measurement, its HTTP framing, and its calibration.

No timing thresholds here (the CPU is shared; `benchmarks/loadgen_truth.py` prints the figures):
the checks are structure and invariants that hold on any machine -- a client cannot see a token
before the server wrote it, nor the server a request before the client sent it, so the client's
own share of TTFT is never negative; a loop starved on purpose is flagged.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from ascendeval import loadgen
from ascendeval.simserver import SimServer, SimSpec

CLIENT_KEYS = {"transport", "send_timer", "loop_lag_samples", "loop_lag_p50_ms", "loop_lag_p99_ms", "loop_lag_max_ms",
               "send_lateness_p50_ms", "send_lateness_p99_ms", "send_lateness_max_ms", "send_backlog_max",
               "loop_lag_limit_ms", "send_lateness_limit_ms", "loop_busy_share", "involuntary_switches",
               "client_bound", "client_bound_reason", "client_bound_reason_zh"}


@pytest.fixture
def sim(request):
    spec = getattr(request, "param", SimSpec(ttft_s=0.02, tpot_s=0.002))
    with SimServer(spec) as srv:
        yield srv


@pytest.mark.parametrize("transport", ["fast", "aiohttp"])
def test_every_run_measures_the_client(sim, transport):
    ep = loadgen.Endpoint(sim.url, "sim-model", transport=transport)
    run = loadgen.run_load(ep, ["x"] * 20, 4, loadgen.LoadSpec(request_rate=200, seed=1))
    c = run.client
    assert set(c) == CLIENT_KEYS
    assert c["transport"] == transport and c["send_timer"] in ("timerfd", "asyncio")
    assert c["loop_lag_samples"] >= 1
    assert 0 <= c["loop_lag_p50_ms"] <= c["loop_lag_p99_ms"] <= c["loop_lag_max_ms"]
    # a send never leaves before its scheduled time: the timer fires at or after it
    assert 0 <= c["send_lateness_p50_ms"] <= c["send_lateness_p99_ms"] <= c["send_lateness_max_ms"]
    assert isinstance(c["send_backlog_max"], int) and 0 <= c["send_backlog_max"] <= 20
    assert isinstance(c["client_bound"], bool)
    assert (c["client_bound_reason"] is None) == (not c["client_bound"]) == (c["client_bound_reason_zh"] is None)
    assert 0 <= c["loop_busy_share"] <= 1
    m = run.metrics()
    assert "client" not in m and m["completed_count"] == 20  # metrics() keeps the point model's keys
    json.dumps(c)  # json-serialisable, as a record


def test_a_starved_event_loop_is_flagged_client_bound(sim, monkeypatch):
    """A callback that holds the client's loop for 30 ms every 40 ms: the loop wakes late and the
    requests leave late, and the point says the client itself was the bottleneck."""
    orig_start = loadgen._LoopMonitor.start

    def start_and_starve(self):
        loop = asyncio.get_running_loop()

        def hog():
            t = time.perf_counter()
            while time.perf_counter() - t < 0.030:  # busy: the loop thread runs, but nothing else does
                pass
            if self._on:
                loop.call_later(0.010, hog)

        loop.call_soon(hog)
        orig_start(self)

    monkeypatch.setattr(loadgen._LoopMonitor, "start", start_and_starve)
    ep = loadgen.Endpoint(sim.url, "sim-model")
    run = loadgen.run_load(ep, ["x"] * 40, 4, loadgen.LoadSpec(request_rate=100, seed=2))
    c = run.client
    assert c["client_bound"] is True
    assert c["loop_lag_max_ms"] >= 20.0 and c["send_lateness_max_ms"] >= 20.0
    assert "event-loop lag" in c["client_bound_reason"] and "send lateness" in c["client_bound_reason"]
    assert "事件循环" in c["client_bound_reason_zh"]
    assert c["loop_busy_share"] > 0.5  # the hog ran on the loop thread: a busy client, not a preempted one
    assert run.metrics()["completed_count"] == 40  # the figures are still there, flagged


def test_client_stats_thresholds_and_backlog():
    # 10 requests due every 10 ms (100 req/s: 10 % of the gap = 1 ms), all sent on time
    due = [i * 0.010 for i in range(10)]
    ok = loadgen.client_stats([0.0001] * 50, due, [d + 0.0001 for d in due], 100.0)
    # each request is overdue for its own lateness: 1 = none waited behind another
    assert ok["client_bound"] is False and ok["send_backlog_max"] == 1 and ok["send_lateness_limit_ms"] == 1.0
    # a stall: requests 3..6 all leave at 0.065 s -> four of them overdue at once
    sent = [d + 0.0001 for d in due]
    for i in range(3, 7):
        sent[i] = 0.065
    late = loadgen.client_stats([0.0001] * 49 + [0.035], due, sent, 100.0, busy_share=0.95, involuntary_switches=0)
    assert late["send_backlog_max"] == 4
    assert late["send_lateness_max_ms"] == pytest.approx(35.0)
    assert late["client_bound"] is True and "saturated" in late["client_bound_reason"]
    # the same lateness with an idle loop: the OS did not run the client
    idle = loadgen.client_stats([0.0001] * 50, due, sent, 100.0, busy_share=0.05, involuntary_switches=120)
    assert idle["client_bound"] is True and "other processes" in idle["client_bound_reason"]
    assert "120" in idle["client_bound_reason"] and "其他进程" in idle["client_bound_reason_zh"]
    # the relative limit: 10 % of the gap, between 1 and 5 ms; rate = inf uses 5 ms
    assert loadgen.client_stats([], [], [], 10.0)["send_lateness_limit_ms"] == 5.0
    assert loadgen.client_stats([], [], [], 1000.0)["send_lateness_limit_ms"] == 1.0
    assert loadgen.client_stats([], [], [], 40.0)["send_lateness_limit_ms"] == pytest.approx(2.5)
    assert loadgen.client_stats([], [], [], float("inf"))["send_lateness_limit_ms"] == 5.0
    empty = loadgen.client_stats([], [], [], 50.0)
    assert empty["loop_lag_p99_ms"] is None and empty["client_bound"] is False


def test_pooled_runs_keep_the_worst_client_figures():
    spec = loadgen.LoadSpec(10.0)
    a = loadgen.LoadRun(spec, [], [], 1.0, 0.0, client=loadgen.client_stats([0.001], [0.0], [0.0005], 10.0))
    b = loadgen.LoadRun(spec, [], [], 1.0, 0.0, client=loadgen.client_stats([0.020], [0.0], [0.030], 10.0))
    p = loadgen.LoadRun.pooled([a, b]).client
    assert p["loop_lag_max_ms"] == pytest.approx(20.0) and p["send_lateness_max_ms"] == pytest.approx(30.0)
    assert p["client_bound"] is True and p["loop_lag_samples"] == 2 and p["client_bound_reason"]
    assert loadgen.LoadRun.pooled([loadgen.LoadRun(spec, [], [], 1.0, 0.0)]).client == {}


def test_calibrate_matches_every_request_and_overheads_are_not_negative():
    rows = loadgen.calibrate([100.0, float("inf")], num_prompts=20, input_len=8, output_len=4)
    assert [r["request_rate_label"] for r in rows] == ["100", "inf"]
    for r in rows:
        assert r["num_requests"] == 20 and r["completed_count"] == 20 and r["matched_count"] == 20
        # causality: the server cannot receive a request before it is sent, the client cannot see a
        # token before it is written -- on one monotonic clock
        for k in ("client_overhead_median_ms", "client_overhead_p90_ms", "client_overhead_p99_ms",
                  "client_send_median_ms", "client_receive_median_ms"):
            assert r[k] >= 0.0, (k, r[k])
        assert r["client_overhead_median_ms"] <= r["client_overhead_p99_ms"] <= r["client_overhead_max_ms"]
        assert r["ttft_error_ms"] >= 0.0 and r["median_ttft_ms"] >= r["server_median_ttft_ms"] >= 50.0
        # (a late first write shortens the server's own (last - first) / (n - 1): no bound at 10 ms)
        assert r["server_median_tpot_ms"] > 0 and r["tpot_error_pct"] is not None
        assert set(r["client"]) == CLIENT_KEYS
        assert r["seconds"] > 0 and r["duration_s"] > 0
    json.dumps(rows)
    with pytest.raises(ValueError, match="no rates"):
        loadgen.calibrate([])


def test_server_records_when_it_received_each_request(sim):
    ep = loadgen.Endpoint(sim.url, "sim-model")
    run = loadgen.run_load(ep, ["x"] * 5, 3, loadgen.LoadSpec(max_concurrency=1), warmup_requests=0)
    by_id = {e["id"]: e for e in sim.events}
    for r in run.results:
        e = by_id[r.response_id]
        assert r.start_s <= e["received"] <= e["arrival"] <= e["writes"][0]
        assert r.start_s + r.ttft_s >= e["writes"][0]
    figs = loadgen.truth_figures(loadgen.result_records(run.results), sim.events, 20.0, 2.0)
    assert figs["matched_count"] == 5 and figs["client_send_median_ms"] >= 0 and figs["client_receive_median_ms"] >= 0


def test_server_received_stamp_is_per_request_on_a_kept_alive_connection(sim):
    """A GET before a POST on one connection (as peer clients probe /v1/models or /health) must not
    lend the POST its arrival time."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    conn.request("GET", "/v1/models")
    conn.getresponse().read()
    time.sleep(0.1)
    sent = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "x", "max_tokens": 2}),
                 headers={"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.close()
    (e,) = sim.events
    assert sent <= e["received"] <= e["arrival"] <= e["writes"][0]


def test_server_matches_by_request_id_and_takes_other_clients_shapes(sim):
    """vLLM's benchmark and AIPerf send X-Request-ID; AIPerf may send max_completion_tokens; GuideLLM
    adds stream_options.continuous_usage_stats. `/sim/stats?clear=1` empties the record."""
    import urllib.request

    body = json.dumps({"model": "sim-model", "prompt": "hi", "max_completion_tokens": 3, "stream": True,
                       "stream_options": {"include_usage": True, "continuous_usage_stats": True}}).encode()
    req = urllib.request.Request(f"{sim.url}/v1/completions", data=body, headers={
        "Content-Type": "application/json", "X-Request-ID": "req-42"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    assert text.count('"text": " tok"') == 3 and '"completion_tokens": 3' in text
    with urllib.request.urlopen(f"{sim.url}/sim/stats?clear=1", timeout=10) as r:
        events = json.load(r)["events"]
    assert [e["x_request_id"] for e in events] == ["req-42"] and len(events[0]["writes"]) == 3
    figs = loadgen.truth_figures([{"key": "req-42", "ttft_ms": 100.0, "tpot_ms": None}], events)
    assert figs["matched_count"] == 1 and figs["client_send_median_ms"] is None
    with urllib.request.urlopen(f"{sim.url}/sim/stats", timeout=10) as r:
        assert json.load(r)["events"] == []


def test_fast_and_aiohttp_transports_give_the_same_rows(sim):
    rows = {}
    for transport in ("fast", "aiohttp"):
        ep = loadgen.Endpoint(sim.url, "sim-model", api="chat", transport=transport)
        run = loadgen.run_load(ep, ["a b c"] * 4, 5, loadgen.LoadSpec(max_concurrency=2))
        rows[transport] = [(r.success, r.output_tokens, r.num_chunks, r.chunk_tokens, r.output_text,
                            r.usage_prompt_tokens, r.http_status, len(r.itl_s)) for r in run.results]
    assert rows["fast"] == rows["aiohttp"]
    assert rows["fast"][0] == (True, 5, 5, [1] * 5, " tok" * 5, 6, 200, 4)  # the sim counts the messages JSON's words


def test_long_prompt_as_token_ids(sim):
    ep = loadgen.Endpoint(sim.url, "sim-model")
    run = loadgen.run_load(ep, [list(range(8192))] * 2, 2, loadgen.LoadSpec(max_concurrency=2))
    assert [r.usage_prompt_tokens for r in run.results] == [8192, 8192]


# --------------------------------------------------------------------------- HTTP framing of the fast transport


class _Scripted:
    """A raw HTTP server answering every request with fixed bytes, dripped a few bytes at a time
    (every framing state is crossed by a read boundary), optionally closing after."""

    def __init__(self, answer: bytes, close: bool = False, drip: int = 7):
        self.answer, self.close, self.drip = answer, close, drip
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    n = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
                    await reader.readexactly(n)
                    for i in range(0, len(self.answer), self.drip):
                        writer.write(self.answer[i:i + self.drip])
                        await writer.drain()
                        await asyncio.sleep(0)
                    if self.close:
                        writer.close()
                        return
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def serve() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass

    def __enter__(self) -> "_Scripted":
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        for t in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(t.cancel)
        self.thread.join(5)


def _sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _chunked(body: bytes, piece: int = 40) -> bytes:
    out = b""
    for i in range(0, len(body), piece):
        part = body[i:i + piece]
        out += b"%x;ext=1\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


_STREAM = _sse({"id": "c1", "choices": [{"index": 0, "text": "a", "finish_reason": None}]},
               {"id": "c1", "choices": [{"index": 0, "text": "b", "finish_reason": "length"}]},
               {"id": "c1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})


@pytest.mark.parametrize("answer,close", [
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(_STREAM), False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(_STREAM) + _STREAM, False),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + _STREAM, True),  # delimited by the close
    (b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + _chunked(_STREAM, 3), True),
], ids=["chunked-ext-trailer-100", "content-length", "until-close", "http10-tiny-chunks"])
def test_fast_transport_framing(answer, close):
    with _Scripted(answer, close=close) as srv:
        ep = loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m", timeout_s=10)
        run = loadgen.run_load(ep, ["p"] * 3, 2, loadgen.LoadSpec(max_concurrency=1))
    for r in run.results:
        assert r.success, r.error
        assert r.response_id == "c1" and r.output_text == "ab" and r.output_tokens == 2 and r.num_chunks == 2
        assert r.ttft_s > 0 and r.e2el_s >= r.ttft_s and len(r.itl_s) == 1


def test_fast_transport_errors_are_rows():
    err = b'{"error": {"message": "bad", "code": 400}}'
    with _Scripted(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(err) + err) as srv:
        run = loadgen.run_load(loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m"), ["p"] * 2, 2,
                               loadgen.LoadSpec(max_concurrency=1), warmup_requests=0)
    assert [r.error for r in run.results] == ['HTTP 400: {"error": {"message": "bad", "code": 400}}'] * 2
    assert all(r.http_status == 400 and not r.success for r in run.results)
    half = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(_STREAM)[:60]
    with _Scripted(half, close=True) as srv:
        run = loadgen.run_load(loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m"), ["p"], 2, warmup_requests=0)
    assert run.results[0].error == "ServerDisconnectedError: Server disconnected"
    with _Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnot j") as srv:
        run = loadgen.run_load(loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m"), ["p"], 2, warmup_requests=0)
    assert run.results[0].error == "stream ended without any generated output"
    with _Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ndata: {x\n") as srv:
        run = loadgen.run_load(loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m"), ["p"], 2, warmup_requests=0)
    assert run.results[0].error.startswith("JSONDecodeError: ")
    with _Scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") as srv:
        run = loadgen.run_load(loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m"), ["p"], 2, warmup_requests=0)
    assert run.results[0].error.startswith("malformed HTTP response: ValueError")


def test_fast_transport_times_out():
    with _Scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") as srv:  # headers, then nothing
        ep = loadgen.Endpoint(f"http://127.0.0.1:{srv.port}", "m", timeout_s=0.3)
        run = loadgen.run_load(ep, ["p"] * 2, 2, loadgen.LoadSpec(max_concurrency=2), warmup_requests=0)
    assert [r.error for r in run.results] == ["TimeoutError: no complete answer within 0.3 s"] * 2


def test_precise_timer_runs_callbacks_in_order_never_early():
    async def main():
        loop = asyncio.get_running_loop()
        timer = loadgen.PreciseTimer(loop)
        got = []
        t0 = time.perf_counter()
        dues = [t0 + d for d in (0.030, 0.010, 0.020, 0.010, 0.0)]
        for i, d in enumerate(dues):
            timer.call_at(d, lambda i=i: got.append((i, time.perf_counter())))
        await timer.sleep_until(t0 + 0.040)
        timer.close()
        return dues, got

    dues, got = asyncio.run(main())
    assert [i for i, _ in got] == [4, 1, 3, 2, 0]  # deadline order, ties in call order
    assert all(t >= dues[i] for i, t in got)


def test_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="transport"):
        loadgen.run_load(loadgen.Endpoint("http://127.0.0.1:9", "m", transport="h2"), ["x"], 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the run-time check (client_check.py)


def test_truth_rows_are_the_rows_the_medians_are_taken_over():
    events = [{"id": f"c{i}", "arrival": 10.0 + i, "received": 10.0 + i, "writes": [10.05 + i, 10.06 + i], "tokens": 2}
              for i in range(3)]
    recs = [{"key": f"c{i}", "ttft_ms": 50.0 + 0.2 * (i + 1) + 0.1, "tpot_ms": 10.0, "start_s": 10.0 + i - 0.0001}
            for i in range(3)]
    out = loadgen.truth_figures(recs, events, 50.0, 10.0, per_request=True)
    rows = out["requests"]
    assert [r["response_id"] for r in rows] == ["c0", "c1", "c2"]
    assert [r["client_overhead_ms"] for r in rows] == pytest.approx([0.3, 0.5, 0.7])
    assert out["client_overhead_median_ms"] == pytest.approx(0.5)
    assert all(r["client_send_ms"] == pytest.approx(0.1) for r in rows)
    assert "requests" not in loadgen.truth_figures(recs, events)


def test_calibration_plans_every_rate_the_serving_step_sends():
    from ascendeval.sections.performance.client_check import planned_rates
    from ascendeval.sections.performance.config import PerfServingConfig

    inf = float("inf")
    assert planned_rates(PerfServingConfig(request_rate=8, request_rates=[2, 8, "inf"], concurrencies=[1])) == [2, 8, inf]
    # no rate inf planned anywhere: none calibrated
    assert planned_rates(PerfServingConfig(request_rate=4, request_rates=[16], concurrencies=[])) == [4, 16]
    # the concurrency points are sent at rate inf
    assert planned_rates(PerfServingConfig(request_rate=4, request_rates=[], concurrencies=[2])) == [4, inf]


def test_calibration_caps_a_fast_rate_and_floors_a_slow_one(monkeypatch):
    seen = []
    real = loadgen.run_load

    def spy(ep, prompts, *a, **k):
        seen.append(len(prompts))
        return real(ep, prompts, *a, **k)

    monkeypatch.setattr(loadgen, "run_load", spy)
    rows = loadgen.calibrate([4.0, 40.0], num_prompts=30, input_len=4, output_len=2, max_seconds_per_rate=0.5,
                             min_requests=6)
    # 4 req/s x 0.5 s = 2, floored at 6; 40 req/s x 0.5 s = 20 of the 30 prompts
    assert seen == [6, 20] and [r["num_requests"] for r in rows] == [6, 20]
    assert all(len(r["requests"]) == r["matched_count"] == r["num_requests"] for r in rows)
    with pytest.raises(ValueError, match="min_requests"):
        loadgen.calibrate([4.0], min_requests=0)


def _card_note(m: dict, lang: str) -> str:
    from ascendeval.report.builder import CardBuilder
    from ascendeval.report.rundata import RunData
    from ascendeval.sections.performance import card_serving

    b = CardBuilder(RunData.__new__(RunData), lang)
    b.source = lambda *a, **k: ""  # no run directory: the source line is not what is tested here
    card_serving.client_note(b, m)
    return "\n".join(b.out)


def test_card_prints_the_calibrated_overhead_and_names_client_bound_points():
    calm = loadgen.client_stats([0.0002] * 20, [0.0, 0.1], [0.0001, 0.1001], 10.0)
    starved = loadgen.client_stats([0.012] * 20, [0.0, 0.1], [0.02, 0.12], 10.0, busy_share=0.2, involuntary_switches=9)
    cal = [{"request_rate_label": "4", "client_overhead_median_ms": 0.21, "client_overhead_p99_ms": 0.48,
            "sim_ttft_ms": 50.0, "sim_tpot_ms": 10.0, "client": calm},
           {"request_rate_label": "inf", "client_overhead_median_ms": 0.9, "client_overhead_p99_ms": 2.5,
            "sim_ttft_ms": 50.0, "sim_tpot_ms": 10.0, "client": starved}]
    pts = [{"sweep": "main", "request_rate_label": "inf", "max_concurrency": None, "client": calm},
           {"sweep": "rate", "request_rate_label": "4", "max_concurrency": None, "client": starved}]
    en = _card_note({"loadgen_calibration": cal, "serving": pts}, "en")
    assert "4 req/s: median 0.21 ms, p99 0.48 ms" in en and "rate ∞: median 0.9" in en
    assert "fast transport" in en and "(the client was the bottleneck)" in en
    assert "at 1 of 2 load points" in en and "other processes held the CPU" in en
    zh = _card_note({"loadgen_calibration": cal, "serving": pts}, "zh")
    assert "中位数 0.21 ms" in zh and "其他进程占用了 CPU" in zh and "other processes" not in zh
    ok = _card_note({"serving": [pts[0]]}, "en")
    assert "not the bottleneck at any of the 1 load points" in ok and "median" not in ok
    assert _card_note({}, "en") == ""
