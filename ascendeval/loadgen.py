"""Load generator for OpenAI-compatible servers: async streaming client + arrival process.

Works against any OpenAI-compatible endpoint (vLLM, vLLM-Ascend, SGLang, MindIE...). Metric
definitions are vLLM's (see `metrics.py`), so figures compare with `vllm bench serve`:

* the clock starts just before the HTTP request is sent (after the arrival wait and after a
  max-concurrency slot is free);
* TTFT is taken at the first SSE chunk that carries generated output (a chat "role only" chunk
  carries none);
* every later output-carrying chunk adds one ITL gap; E2EL ends at the last such chunk;
* output token counts come from the final `usage` chunk (`stream_options.include_usage`), never
  from re-tokenising text; when a server sends no usage the row says so (`usage_reported`).

Arrival times follow vLLM: gamma-distributed gaps with shape = burstiness (1.0 = Poisson) and
mean 1/rate, rescaled so that N requests span N/rate seconds; rate = inf sends all at once.

The client runs its own event loop in a worker thread (`run_load`), so it works the same from a
script and from a Jupyter cell (where a loop is already running).

How the client keeps its own share of the figures small (measured against a server that records its
own timing, `benchmarks/loadgen_truth.py`; `calibrate` does the same in a few seconds):

* the default transport (`Endpoint.transport="fast"`) is a small HTTP/1.1 client on asyncio
  protocols: a chunk's arrival time is taken in the socket's `data_received` callback, in the same
  loop iteration the bytes are read, and nothing else is done then (no coroutine resumed per chunk,
  no JSON parsed): the SSE/JSON parsing of every stream runs after the timed run, from the stored
  (arrival time, bytes) pieces, with the same rules as before. Requests are serialized to bytes
  before the clock starts, so the clock covers only the socket write and what follows;
* sends are scheduled on a Linux timerfd (CLOCK_MONOTONIC, the clock of `time.perf_counter`):
  asyncio's own timers wake up to 1 ms late (epoll takes whole milliseconds), the timerfd wakes
  the loop at the due time; elsewhere the loop's timers are used;
* connections are opened before the clock starts (a warm keep-alive pool sized from the load) and
  topped up in the background, so no TCP handshake lands in a timed request (vLLM's client opens
  a connection inside the first requests' TTFT); `transport="aiohttp"` keeps the aiohttp client;
* the garbage collector is frozen and paused for the timed window (a full collection stalled the
  loop ~24 ms mid-run even after `gc.freeze()`), and runs again right after.

Every run also measures the client itself (`LoadRun.client`, see `client_stats`): how late its
event loop wakes, how late requests leave against their schedule, the largest send backlog, and
whether the client was the bottleneck of the point (`client_bound`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ctypes
import gc
import heapq
import itertools
import json
import math
import os
import ssl as ssl_mod
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from .metrics import RequestResult, serving_metrics

Api = Literal["completions", "chat"]
Transport = Literal["fast", "aiohttp"]


class EndpointError(RuntimeError):
    """The endpoint cannot be reached or does not answer like an OpenAI-compatible server."""


# --------------------------------------------------------------------------- arrival process


def arrival_offsets(
    n: int, request_rate: float, burstiness: float = 1.0, seed: int = 0, normalize: bool = True
) -> np.ndarray:
    """Send times (seconds from the start) of `n` requests.

    Gaps are Gamma(shape=burstiness, scale=1/(rate*burstiness)): mean 1/rate, coefficient of
    variation 1/sqrt(burstiness) (burstiness 1 = Poisson, < 1 burstier, > 1 more regular). As
    in vLLM, the cumulative times are rescaled so the last request is sent at n/rate: the offered
    load is exactly the requested rate over the run instead of a random one. The first request
    also waits one gap, as in vLLM.

    The gaps are drawn from numpy's legacy `RandomState(seed)`, the generator behind vLLM's
    `np.random.seed(seed)` + `np.random.gamma(...)`: with the same seed, rate and burstiness the
    schedule is the one `vllm bench serve --seed` uses, so a comparison runs the same load.
    """
    if n < 0:
        raise ValueError(f"number of requests must be >= 0, got {n}")
    if not (request_rate > 0):
        raise ValueError(f"request_rate must be > 0 or inf, got {request_rate}")
    if not (burstiness > 0):
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if n == 0 or math.isinf(request_rate):
        return np.zeros(n)
    rng = np.random.RandomState(seed)  # noqa: NPY002 - vLLM's generator, see docstring
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=n)
    t = np.cumsum(gaps)
    if normalize and t[-1] > 0:
        t = t * ((n / request_rate) / t[-1])
    return t


# --------------------------------------------------------------------------- client


@dataclass
class Endpoint:
    """Where and how to send requests."""

    base_url: str  # e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted)
    model: str
    api: Api = "completions"
    api_key: str | None = None
    timeout_s: float = 600.0
    ignore_eos: bool = True  # vLLM/SGLang extension: generate exactly max_tokens
    request_token_ids: bool = False  # vLLM extension: token ids per chunk -> exact per-token ITL
    extra_body: dict[str, Any] = field(default_factory=dict)
    # "fast": this module's HTTP/1.1 client (timestamps in the socket callback, parsing after the
    # run); "aiohttp": aiohttp's client, as vLLM's benchmark uses (for comparison, or a server the
    # fast client cannot talk to)
    transport: Transport = "fast"

    @property
    def root(self) -> str:
        url = self.base_url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def url(self) -> str:
        return f"{self.root}/v1/{'chat/completions' if self.api == 'chat' else 'completions'}"

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def payload(self, prompt: str | list[int], max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.api == "chat":
            if not isinstance(prompt, str):
                raise ValueError("the chat API needs text prompts, got token ids")
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.ignore_eos:
            body["ignore_eos"] = True
        if self.request_token_ids:
            body["return_token_ids"] = True
        body.update(self.extra_body)
        return body


def _chunk_output(choice: dict[str, Any], api: Api) -> tuple[bool, str, int | None]:
    """(carries output?, text, token count or None) for one streamed choice.

    A chunk carries output when it has text, or token ids, or -- as vLLM streams one chunk per
    engine step even when the new token has no printable text yet (partial UTF-8, special
    token) -- when it is an empty-text chunk of a stream still in progress. Not output: a chat
    "role only" chunk and an empty final chunk that only brings the finish_reason.
    """
    if api == "chat":
        delta = choice.get("delta") or {}
        text = (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")
        is_role_chunk = "role" in delta and not text
    else:
        text = choice.get("text") or ""
        is_role_chunk = False
    ids = choice.get("token_ids")  # vLLM's return_token_ids extension, when asked for
    ntok = len(ids) if isinstance(ids, list) else None
    if text or ntok:
        return True, text, ntok
    carries = ntok is None and not is_role_chunk and not choice.get("finish_reason")
    return carries, text, ntok


class _StreamParse:
    """The SSE stream of one request, fed as (arrival time, bytes) pieces: the timing and usage rules
    of the module docstring. Both transports use it: the aiohttp one while the bytes arrive, the fast
    one after the run from the pieces it stored. Raises EndpointError (an error event in the stream),
    json.JSONDecodeError, or TypeError/AttributeError/KeyError/ValueError (a malformed chunk)."""

    __slots__ = ("res", "api", "buf", "counts", "finished", "last")

    def __init__(self, res: RequestResult, api: Api):
        self.res, self.api = res, api
        self.buf = b""
        self.counts: list[int | None] = []
        self.finished = False
        self.last = res.start_s

    def feed(self, now: float, data: bytes) -> None:
        res = self.res
        buf = self.buf + data if self.buf else data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            if not line or line.startswith(b":"):
                continue  # SSE keep-alive / comment
            if line.startswith((b"event:", b"id:", b"retry:")):
                continue  # SSE fields other than data carry no payload here
            if line.startswith(b"data:"):
                line = line[5:].strip()
            if line == b"[DONE]":
                self.finished = True
                continue
            msg = json.loads(line)
            if "error" in msg and not msg.get("choices"):
                err = msg["error"]
                raise EndpointError(f"server error in stream: {err.get('message', err) if isinstance(err, dict) else err}")
            if res.response_id is None and isinstance(msg.get("id"), str):
                res.response_id = msg["id"]
            usage = msg.get("usage")
            if usage:
                res.usage_reported = True
                res.output_tokens = usage.get("completion_tokens")
                res.usage_prompt_tokens = usage.get("prompt_tokens")
                details = usage.get("prompt_tokens_details")
                if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                    res.cached_tokens = details["cached_tokens"]
            for choice in msg.get("choices") or []:
                pids = choice.get("prompt_token_ids") or msg.get("prompt_token_ids")
                if isinstance(pids, list) and res.prompt_token_ids is None:
                    res.prompt_token_ids = [int(t) for t in pids]
                if choice.get("finish_reason"):
                    self.finished = True
                carries, text, ntok = _chunk_output(choice, self.api)
                if not carries:
                    continue  # role chunk, empty final chunk
                if res.ttft_s is None:
                    res.ttft_s = now - res.start_s
                else:
                    res.itl_s.append(now - self.last)
                self.last = now
                res.num_chunks += 1
                res.output_text_chars += len(text)
                res.output_text += text
                ids = choice.get("token_ids")
                if isinstance(ids, list):
                    if res.output_token_ids is None:
                        res.output_token_ids = []
                    res.output_token_ids.extend(int(t) for t in ids)
                self.counts.append(ntok)
        self.buf = buf

    def finish(self) -> RequestResult:
        """The row once the stream has ended without a transport error."""
        res = self.res
        if res.ttft_s is None:
            res.error = "stream ended without any generated output"
            return res
        if not self.finished:
            res.error = "stream ended before finish_reason / [DONE] (connection closed mid-response)"
            return res
        res.e2el_s = self.last - res.start_s
        res.success = True
        counts = self.counts
        if counts and all(c is not None for c in counts):
            res.chunk_tokens = [int(c) for c in counts]  # type: ignore[arg-type]
        elif res.output_tokens is not None and res.output_tokens == res.num_chunks:
            res.chunk_tokens = [1] * res.num_chunks  # one token per chunk: exact without token ids
        return res


_STREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, EndpointError, json.JSONDecodeError, OSError)
_CHUNK_ERRORS = (TypeError, AttributeError, KeyError, ValueError)


async def stream_request(
    session: aiohttp.ClientSession, ep: Endpoint, index: int, prompt: str | list[int], max_tokens: int,
    prompt_tokens: int | None = None,
) -> RequestResult:
    """Send one streaming request with aiohttp and time it. Never raises: failures are returned as rows."""
    res = RequestResult(index=index, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    body = ep.payload(prompt, max_tokens)
    st = time.perf_counter()
    res.start_s = st
    parse = _StreamParse(res, ep.api)
    try:
        async with session.post(ep.url, json=body, headers=ep.headers()) as resp:
            res.http_status = resp.status
            if resp.status != 200:
                text = (await resp.text())[:300].replace("\n", " ")
                res.error = f"HTTP {resp.status}: {text}"
                return res
            async for data in resp.content.iter_any():
                parse.feed(time.perf_counter(), data)  # the arrival time of these bytes
    except _STREAM_ERRORS as exc:
        res.error = f"{type(exc).__name__}: {exc}".strip()
        return res
    except _CHUNK_ERRORS as exc:  # a malformed chunk: this request's failure
        res.error = f"malformed stream chunk: {type(exc).__name__}: {exc}".strip()
        return res
    return parse.finish()


# --------------------------------------------------------------------------- precise timer


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd() -> tuple[int, Callable[[float], None]] | None:
    """(fd, arm) of a Linux timerfd on CLOCK_MONOTONIC, where `arm(t)` makes the fd readable at the
    absolute `time.perf_counter()` time t; None where there is none (other systems, or a
    perf_counter on another clock)."""
    if not sys.platform.startswith("linux"):
        return None
    if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = [ctypes.c_int, ctypes.c_int]
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    fd = create(1, os.O_NONBLOCK | os.O_CLOEXEC)  # CLOCK_MONOTONIC
    if fd < 0:
        return None
    spec = _Itimerspec()
    ref = ctypes.byref(spec)

    def arm(t: float) -> None:
        t = max(t, 1e-6)  # an all-zero time would disarm it
        sec = int(t)
        spec.it_value.tv_sec = sec
        spec.it_value.tv_nsec = int((t - sec) * 1e9)
        settime(fd, 1, ref, None)  # TFD_TIMER_ABSTIME

    return fd, arm


class PreciseTimer:
    """Runs callbacks on a running event loop at absolute `time.perf_counter()` deadlines.

    asyncio's timers wake up to 1 ms late (epoll's timeout is in whole milliseconds and the loop
    rounds up). On Linux this timer arms a timerfd (CLOCK_MONOTONIC, nanosecond deadlines) watched
    by the loop itself, so the loop wakes at the deadline; no thread, no GIL hand-off. Elsewhere it
    falls back to the loop's own timers (`precise` is False then). Callbacks run in the loop's
    thread, in deadline order; one that raises is reported to the loop's exception handler.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._armed = math.inf
        self._firing = False
        self._handle: asyncio.TimerHandle | None = None
        self._fd = -1
        tfd = _timerfd()
        self.precise = tfd is not None
        if tfd is not None:
            self._fd, self._arm_fd = tfd
            try:
                loop.add_reader(self._fd, self._fire)
            except (NotImplementedError, OSError, RuntimeError):  # a loop without add_reader
                os.close(self._fd)
                self._fd, self.precise = -1, False

    @property
    def kind(self) -> str:
        return "timerfd" if self.precise else "asyncio"

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), callback, args))
        if when < self._armed and not self._firing:
            self._arm(when)

    def sleep_until(self, when: float) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = self._loop.create_future()
        self.call_at(when, _resolve, fut)
        return fut

    def _arm(self, when: float) -> None:
        self._armed = when
        if self.precise:
            self._arm_fd(when)
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_later(max(0.0, when - time.perf_counter()), self._fire)

    def _fire(self) -> None:
        if self.precise:
            try:
                os.read(self._fd, 8)
            except (BlockingIOError, InterruptedError):
                pass
        else:
            self._handle = None
        heap = self._heap
        self._firing = True
        try:
            while heap and heap[0][0] <= time.perf_counter():
                _, _, cb, args = heapq.heappop(heap)
                try:
                    cb(*args)
                except Exception as exc:  # noqa: BLE001 - one callback must not stop the others
                    self._loop.call_exception_handler({"message": "PreciseTimer callback failed", "exception": exc})
        finally:
            self._firing = False
            self._armed = math.inf
            if heap:
                self._arm(heap[0][0])

    def close(self) -> None:
        self._heap.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


# --------------------------------------------------------------------------- client self-measurement

LOOP_TICK_S = 0.005  # the lag ticker wakes every 5 ms
LOOP_LAG_LIMIT_MS = 5.0  # p99 event-loop lag above this: the client's timestamps were late by as much
LATENESS_LIMIT_MS = 5.0  # p99 send lateness above this (or above the relative limit below) ...
LATENESS_GAP_SHARE = 0.10  # ... or above 10 % of the mean arrival gap,
LATENESS_FLOOR_MS = 1.0  # but never below 1 ms (asyncio's own timer resolution, vLLM's client's floor)


class _LoopMonitor:
    """How late the event loop wakes: a ticker due every LOOP_TICK_S on the precise timer records
    (time it ran - time it was due). A stall longer than a tick shows as one large sample (the
    missed ticks are skipped, not queued). Also the loop thread's CPU time and involuntary context
    switches over the window, which tell a busy client (CPU time ~ wall time) from one the OS did
    not run (other processes had the CPU)."""

    def __init__(self, timer: PreciseTimer):
        self.timer = timer
        self.lags: list[float] = []
        self._due = 0.0
        self._on = False
        self.wall_s = self.busy_s = 0.0
        self.involuntary_switches: int | None = None

    @staticmethod
    def _nivcsw() -> int | None:
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw  # type: ignore[attr-defined]
        except (ImportError, AttributeError, OSError, ValueError):
            return None

    def start(self) -> None:
        self._on = True
        self._t0, self._cpu0, self._sw0 = time.perf_counter(), time.thread_time(), self._nivcsw()
        self._due = self._t0 + LOOP_TICK_S
        self.timer.call_at(self._due, self._tick)

    def stop(self) -> None:
        self._on = False
        self.wall_s = time.perf_counter() - self._t0
        self.busy_s = time.thread_time() - self._cpu0
        sw = self._nivcsw()
        self.involuntary_switches = None if sw is None or self._sw0 is None else sw - self._sw0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lags.append(now - self._due)
        if not self._on:
            return
        nxt = self._due + LOOP_TICK_S
        if nxt <= now:
            nxt = now + LOOP_TICK_S
        self._due = nxt
        self.timer.call_at(nxt, self._tick)

    def stats(self, due_s: Sequence[float], sent_s: Sequence[float], request_rate: float, transport: str) -> dict[str, Any]:
        return client_stats(self.lags, due_s, sent_s, request_rate, self.timer.kind, transport,
                            busy_share=self.busy_s / self.wall_s if self.wall_s > 0 else None,
                            involuntary_switches=self.involuntary_switches)


def _max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """Largest number of [start, end) intervals open at once."""
    ev = sorted([(a, 1) for a, b in intervals if b > a] + [(b, -1) for a, b in intervals if b > a])
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def client_stats(loop_lags_s: Sequence[float], due_s: Sequence[float], sent_s: Sequence[float],
                 request_rate: float, timer: str = "timerfd", transport: str = "fast",
                 busy_share: float | None = None, involuntary_switches: int | None = None) -> dict[str, Any]:
    """The client's own figures for one load point, and whether it was the bottleneck.

    * loop lag: how late the event-loop ticker woke (p50/p99/max ms);
    * send lateness: actual send time - scheduled time, per request (p50/p99/max ms); a request
      held for a max-concurrency slot is scheduled at the later of its arrival time and the time
      its slot came free (waiting for a slot is the load's doing, not the client's);
    * send backlog: the largest number of requests whose scheduled time had passed but which were
      not yet sent, at any moment (1: each request alone, overdue for its own lateness; more: requests
      waited behind one another).

    `client_bound` is True when the p99 loop lag exceeds LOOP_LAG_LIMIT_MS (5 ms), or the p99 send
    lateness exceeds min(5 ms, 10 % of the mean arrival gap), floored at 1 ms (rate = inf: 5 ms).
    Then the point measured the client as much as the server; the reason says which limit and by
    how much (`client_bound_reason`, `client_bound_reason_zh`), and why: `loop_busy_share` (the
    loop thread's CPU time / wall time over the run; near 1 = the client itself was saturated) and
    `involuntary_switches` (times the OS took the CPU from the loop thread: a client mostly idle but
    late was waiting for a CPU other processes held).
    """
    lags = np.asarray(loop_lags_s, dtype=float) * 1e3
    late = np.asarray([s - d for d, s in zip(due_s, sent_s)], dtype=float) * 1e3
    pct = lambda a, q: None if a.size == 0 else float(np.percentile(a, q))  # noqa: E731
    mx = lambda a: None if a.size == 0 else float(np.max(a))  # noqa: E731
    if math.isinf(request_rate):
        late_limit = LATENESS_LIMIT_MS
        gap_ms = None
    else:
        gap_ms = 1e3 / request_rate
        late_limit = max(LATENESS_FLOOR_MS, min(LATENESS_LIMIT_MS, LATENESS_GAP_SHARE * gap_ms))
    out: dict[str, Any] = {
        "transport": transport,
        "send_timer": timer,
        "loop_lag_samples": int(lags.size),
        "loop_lag_p50_ms": pct(lags, 50), "loop_lag_p99_ms": pct(lags, 99), "loop_lag_max_ms": mx(lags),
        "send_lateness_p50_ms": pct(late, 50), "send_lateness_p99_ms": pct(late, 99),
        "send_lateness_max_ms": mx(late),
        "send_backlog_max": _max_overlap(list(zip(due_s, sent_s))),
        "loop_lag_limit_ms": LOOP_LAG_LIMIT_MS,
        "send_lateness_limit_ms": late_limit,
        "loop_busy_share": None if busy_share is None else min(1.0, max(0.0, float(busy_share))),
        "involuntary_switches": involuntary_switches,
    }
    en, zh = [], []
    lag99, late99 = out["loop_lag_p99_ms"], out["send_lateness_p99_ms"]
    if lag99 is not None and lag99 > LOOP_LAG_LIMIT_MS:
        en.append(f"p99 event-loop lag {lag99:.2f} ms > {LOOP_LAG_LIMIT_MS:g} ms: timestamps were taken late")
        zh.append(f"事件循环 p99 延迟 {lag99:.2f} ms > {LOOP_LAG_LIMIT_MS:g} ms：时间戳记录偏晚")
    if late99 is not None and late99 > late_limit:
        what = "" if gap_ms is None else f" ({LATENESS_GAP_SHARE:.0%} of the mean arrival gap {gap_ms:.3g} ms, 1-5 ms)"
        what_zh = "" if gap_ms is None else f"（平均到达间隔 {gap_ms:.3g} ms 的 {LATENESS_GAP_SHARE:.0%}，1-5 ms）"
        en.append(f"p99 send lateness {late99:.2f} ms > {late_limit:.3g} ms{what}: requests left later than scheduled "
                  f"(largest backlog {out['send_backlog_max']})")
        zh.append(f"发送 p99 滞后 {late99:.2f} ms > {late_limit:.3g} ms{what_zh}：请求晚于计划发出"
                  f"（最大积压 {out['send_backlog_max']} 个）")
    if en and out["loop_busy_share"] is not None:
        b = out["loop_busy_share"]
        if b >= 0.8:
            en.append(f"the client's loop was busy {b:.0%} of the run: the client itself was saturated")
            zh.append(f"客户端事件循环 {b:.0%} 的时间在忙：客户端自身已饱和")
        else:
            sw = "" if involuntary_switches is None else f", {involuntary_switches} involuntary context switches"
            sw_zh = "" if involuntary_switches is None else f"，{involuntary_switches} 次被动上下文切换"
            en.append(f"the client's loop was busy only {b:.0%} of the run{sw}: other processes held the CPU")
            zh.append(f"客户端事件循环仅 {b:.0%} 的时间在忙{sw_zh}：其他进程占用了 CPU")
    out["client_bound"] = bool(en)
    out["client_bound_reason"] = "; ".join(en) if en else None
    out["client_bound_reason_zh"] = "；".join(zh) if zh else None
    return out


def _pooled_client(clients: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Repeats of one point: the worst of each figure (percentiles cannot be pooled exactly
    without the samples), bound when any repeat was."""
    clients = [c for c in clients if c]
    if not clients:
        return {}
    out = dict(clients[0])
    for k, v in clients[0].items():
        vals = [c.get(k) for c in clients]
        if isinstance(v, bool) or k in ("client_bound",):
            continue
        if all(isinstance(x, (int, float)) for x in vals):
            out[k] = sum(vals) if k == "loop_lag_samples" else max(vals)
    out["client_bound"] = any(c.get("client_bound") for c in clients)
    for key in ("client_bound_reason", "client_bound_reason_zh"):
        reasons = [c[key] for c in clients if c.get(key)]
        out[key] = " | ".join(dict.fromkeys(reasons)) if reasons else None
    return out


# --------------------------------------------------------------------------- fast transport

_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _LENGTH, _UNTIL_CLOSE, _IDLE = range(8)
_MAX_HEAD = 1 << 16
_PARSE_EAGERLY_ABOVE = 256 << 20  # bytes of stored streams above which rows are parsed as they complete


class _Req:
    """One request of the fast transport: its bytes, schedule, and what came back."""

    __slots__ = ("index", "raw", "due", "st", "conn", "status", "headers", "pieces", "nbytes", "error", "done",
                 "timeout", "result", "n_out", "n_in")

    def __init__(self, index: int, raw: bytes, n_out: int, n_in: int | None):
        self.index, self.raw, self.n_out, self.n_in = index, raw, n_out, n_in
        self.due = 0.0
        self.st = 0.0
        self.conn: _Conn | None = None
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.pieces: list[tuple[float, bytes]] = []
        self.nbytes = 0
        self.error: str | None = None
        self.done = False
        self.timeout: asyncio.TimerHandle | None = None
        self.result: RequestResult | None = None


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection. `data_received` stamps each read and decodes only the
    response framing (status line, headers, chunked or length-delimited body); the body pieces are
    stored with their arrival time for `_fast_result`."""

    def __init__(self, engine: "_Engine"):
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.req: _Req | None = None
        self.state = _IDLE
        self.buf = b""
        self.remaining = 0
        self.keep_alive = True
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, req: _Req) -> None:
        self.req = req
        req.conn = self
        self.state = _HEAD
        self.buf = b""
        self.transport.write(req.raw)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        req = self.req
        if req is None:  # bytes nobody asked for: the connection is not usable any more
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]
            return
        req.nbytes += len(data)
        try:
            self._feed(now, req, data)
        except (ValueError, IndexError) as exc:
            self._fail(f"malformed HTTP response: {type(exc).__name__}: {exc}")

    def _feed(self, now: float, req: _Req, data: bytes) -> None:
        if self.state == _HEAD:
            buf = self.buf + data if self.buf else data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise ValueError("response header larger than 64 KiB")
                    self.buf = buf
                    return
                lines = buf[:end].decode("latin-1").split("\r\n")
                buf = buf[end + 4:]
                version, status = lines[0].split(None, 2)[:2]
                code = int(status)
                if 100 <= code < 200:
                    continue  # 100 Continue and friends: the answer follows
                break
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
            req.status, req.headers = code, headers
            self.keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
            self.buf = b""
            if code in (204, 304):
                self._complete(now)
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.state = _CHUNK_SIZE
            elif "content-length" in headers:
                self.remaining = int(headers["content-length"])
                self.state = _LENGTH
                if self.remaining == 0:
                    self._complete(now)
                    return
            else:
                self.state = _UNTIL_CLOSE
                self.keep_alive = False
            if not buf:
                return
            data = buf
        state = self.state
        if state == _LENGTH:
            take = data if len(data) <= self.remaining else data[: self.remaining]
            req.pieces.append((now, take))
            self.remaining -= len(take)
            if self.remaining == 0:
                self._complete(now)
            return
        if state == _UNTIL_CLOSE:
            req.pieces.append((now, data))
            return
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        pieces = req.pieces
        while pos < n:
            if state == _CHUNK_SIZE:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                size = int(buf[pos:i].split(b";", 1)[0], 16)
                pos = i + 2
                if size == 0:
                    state = _TRAILER
                else:
                    self.remaining = size
                    state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                take = min(n - pos, self.remaining)
                pieces.append((now, buf[pos:pos + take]))
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if n - pos < 2:
                    break
                pos += 2
                state = _CHUNK_SIZE
            else:  # _TRAILER: optional trailer lines, then an empty line
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    break
                empty = i == pos
                pos = i + 2
                if empty:
                    self.state = _IDLE
                    self.buf = b""
                    self._complete(now)
                    return
        self.state = state
        self.buf = buf[pos:] if pos < n else b""

    def _complete(self, now: float) -> None:
        req = self.req
        self.req = None
        self.state = _IDLE
        if req is not None:
            self.engine.finished(req, now, self if self.keep_alive and not self.closed else None)
        if not self.keep_alive and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _fail(self, error: str) -> None:
        req = self.req
        self.req = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        if req is not None and not req.done:
            req.error = error
            self.engine.finished(req, time.perf_counter(), None)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.engine.forget(self)
        req = self.req
        if req is None or req.done:
            return
        if self.state == _UNTIL_CLOSE:  # a body delimited by the close: complete now
            self.req = None
            self.engine.finished(req, time.perf_counter(), None)
            return
        self.req = None
        req.error = "ServerDisconnectedError: Server disconnected" if exc is None else f"{type(exc).__name__}: {exc}".strip()
        self.engine.finished(req, time.perf_counter(), None)


class _Engine:
    """The fast transport: a pool of keep-alive connections, requests started by the precise
    timer at their scheduled time (or when a max-concurrency slot frees), rows parsed later."""

    def __init__(self, ep: Endpoint, loop: asyncio.AbstractEventLoop, max_concurrency: int | None):
        self.ep, self.loop = ep, loop
        u = urlsplit(ep.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"the fast transport needs an http(s) URL, got {ep.url!r}")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl = ssl_mod.create_default_context() if u.scheme == "https" else None
        path = u.path + (f"?{u.query}" if u.query else "")
        head = f"POST {path} HTTP/1.1\r\nHost: {u.netloc.rpartition('@')[2]}\r\nUser-Agent: ascendeval-loadgen\r\nAccept: */*\r\n"
        for k, v in ep.headers().items():
            head += f"{k}: {v}\r\n"
        self.head = head.encode("latin-1")
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.spare = 2
        self.limit = max_concurrency
        self.active = 0
        self.queue: collections.deque[_Req] = collections.deque()
        self.pending = 0
        self.waiter: asyncio.Future[None] | None = None
        self.held = 0
        self.on_done: Callable[[_Req], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # an idle connection older than this is replaced in the background (uvicorn, under vLLM and
        # SGLang, closes idle keep-alive connections at 5 s; a request sent as it closes would fail)
        self.keepalive_s = 4.0
        self._sweeper: asyncio.TimerHandle | None = None

    def build(self, index: int, prompt: str | list[int], max_tokens: int, prompt_tokens: int | None) -> _Req:
        body = json.dumps(self.ep.payload(prompt, max_tokens)).encode()
        return _Req(index, self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body, max_tokens, prompt_tokens)

    # -- connections
    async def _open(self) -> _Conn:
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(lambda: _Conn(self), self.host, self.port, ssl=self.ssl,
                                        server_hostname=self.host if self.ssl else None), 30)
        self.conns.add(conn)
        return conn

    def _spawn(self, coro: Any) -> None:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _open_spare(self) -> None:
        try:
            conn = await self._open()
        except (OSError, asyncio.TimeoutError, ssl_mod.SSLError):
            return
        finally:
            self.opening -= 1
        conn.idle_since = time.perf_counter()
        self.idle.append(conn)

    def top_up(self) -> None:
        want = self.spare + (self.active >> 4)  # a few spare connections, more under load
        while len(self.idle) + self.opening < want:
            self.opening += 1
            self._spawn(self._open_spare())

    async def prefill(self, n: int) -> None:
        """Open `n` keep-alive connections before the clock starts (64 at a time)."""
        n -= len(self.idle)
        while n > 0:
            k = min(n, 64)
            self.opening += k
            await asyncio.gather(*(self._open_spare() for _ in range(k)))
            n -= k

    def _take_idle(self, now: float) -> _Conn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.keepalive_s:
                conn.closed = True
                conn.transport.close()
                continue
            return conn
        return None

    def forget(self, conn: _Conn) -> None:
        self.conns.discard(conn)

    def _sweep(self) -> None:
        """Every second while requests are pending: close idle connections near the server's
        keep-alive limit and open their replacements now, off any request's clock."""
        now = time.perf_counter()
        keep = []
        for conn in self.idle:
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.keepalive_s - 1.0:
                conn.closed = True
                conn.transport.close()
                continue
            keep.append(conn)
        # replace them up to as many idle as are in flight (+ a few): the pool a Poisson load's next
        # peak needs, without churning a large pool a past burst left
        n_new = min(len(self.idle) - len(keep), self.active + 4 - len(keep) - self.opening)
        self.idle[:] = keep
        for _ in range(max(0, n_new)):
            self.opening += 1
            self._spawn(self._open_spare())
        self.top_up()
        self._sweeper = self.loop.call_later(1.0, self._sweep) if self.pending > 0 else None

    # -- requests
    def submit(self, req: _Req) -> None:
        """Start `req` now (the timer calls this at its scheduled time), or queue it for a slot."""
        if self.limit is not None and self.active >= self.limit:
            self.queue.append(req)
            return
        self._start(req)

    def _start(self, req: _Req) -> None:
        self.active += 1
        conn = self._take_idle(time.perf_counter())
        req.st = time.perf_counter()  # the clock starts just before the request is written
        req.timeout = self.loop.call_later(self.ep.timeout_s, self._timed_out, req)
        if conn is not None:
            conn.send(req)
        else:
            self._spawn(self._connect_send(req))
        self.top_up()

    async def _connect_send(self, req: _Req) -> None:
        try:
            conn = await self._open()
        except (OSError, asyncio.TimeoutError, ssl_mod.SSLError) as exc:
            if not req.done:
                req.error = f"{type(exc).__name__}: {exc}".strip()
                self.finished(req, time.perf_counter(), None)
            return
        if req.done:  # timed out while connecting
            conn.idle_since = time.perf_counter()
            self.idle.append(conn)
            return
        conn.send(req)

    def _timed_out(self, req: _Req) -> None:
        if req.done:
            return
        conn = req.conn
        req.error = f"TimeoutError: no complete answer within {self.ep.timeout_s:g} s"
        if conn is not None and conn.req is req:
            conn.req = None
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
        self.finished(req, time.perf_counter(), None)

    def finished(self, req: _Req, now: float, conn: _Conn | None) -> None:
        if req.done:
            return
        req.done = True
        req.conn = None
        if req.timeout is not None:
            req.timeout.cancel()
            req.timeout = None
        if conn is not None:
            conn.idle_since = now
            self.idle.append(conn)
        self.active -= 1
        self.held += req.nbytes
        if self.held > _PARSE_EAGERLY_ABOVE:  # a very long run: keep rows, not raw streams
            req.result = _fast_result(req, self.ep.api)
            req.pieces = []
        if self.on_done is not None:
            self.on_done(req)
        if self.queue:
            nxt = self.queue.popleft()
            nxt.due = max(nxt.due, now)  # scheduled at the slot's release: the wait was the load's
            self._start(nxt)
        self.pending -= 1
        if self.pending <= 0 and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def run(self, reqs: Sequence[_Req], timer: PreciseTimer) -> None:
        """Start every request at its `due` time and wait until all have finished."""
        if not reqs:
            return
        self.pending = len(reqs)
        self.waiter = self.loop.create_future()
        for r in reqs:
            timer.call_at(r.due, self.submit, r)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(1.0, self._sweep)
        try:
            await self.waiter
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for conn in list(self.conns) + self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
        self.conns.clear()
        await asyncio.sleep(0)


def _fast_result(req: _Req, api: Api) -> RequestResult:
    """The row of one fast-transport request, from its stored pieces (same rules as the aiohttp path)."""
    if req.result is not None:
        return req.result
    res = RequestResult(index=req.index, prompt_tokens=req.n_in, max_tokens=req.n_out)
    res.start_s = req.st
    res.http_status = req.status
    if req.status is not None and req.status != 200:
        if req.error:
            res.error = req.error
        else:
            text = b"".join(d for _, d in req.pieces).decode("utf-8", "replace")[:300].replace("\n", " ")
            res.error = f"HTTP {req.status}: {text}"
        return res
    parse = _StreamParse(res, api)
    try:
        for now, data in req.pieces:
            parse.feed(now, data)
    except (EndpointError, json.JSONDecodeError) as exc:
        res.error = f"{type(exc).__name__}: {exc}".strip()
        return res
    except _CHUNK_ERRORS as exc:
        res.error = f"malformed stream chunk: {type(exc).__name__}: {exc}".strip()
        return res
    if req.error:
        res.error = req.error
        return res
    return parse.finish()


# --------------------------------------------------------------------------- load runs


@dataclass
class LoadSpec:
    """How requests arrive."""

    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    seed: int = 0

    def label(self) -> str:
        rate = "inf" if math.isinf(self.request_rate) else f"{self.request_rate:g}"
        conc = "" if self.max_concurrency is None else f" conc={self.max_concurrency}"
        return f"rate={rate}{conc}"


@dataclass
class LoadRun:
    """One measured load: all rows (warm-up rows flagged), the timed duration, and the client's own
    figures for the point (`client`, see `client_stats`; not part of `metrics()`, whose keys the
    performance section's point model fixes: record it beside the point)."""

    spec: LoadSpec
    results: list[RequestResult]
    warmup: list[RequestResult]
    duration_s: float
    started_at: float  # time.time() at the start, for logs
    client: dict[str, Any] = field(default_factory=dict)

    def metrics(self, slo_ms: dict[str, float] | None = None) -> dict[str, Any]:
        m = serving_metrics(self.results, self.duration_s, slo_ms)
        m["request_rate_req_per_s"] = None if math.isinf(self.spec.request_rate) else self.spec.request_rate
        m["request_rate_label"] = "inf" if math.isinf(self.spec.request_rate) else f"{self.spec.request_rate:g}"
        m["burstiness"] = self.spec.burstiness
        m["max_concurrency"] = self.spec.max_concurrency
        m["warmup_count"] = len(self.warmup)
        return m  # the client's own figures are `self.client` (the section's point model declares what it records)

    def rows(self, **tags: Any) -> list[dict[str, Any]]:
        label = self.spec.label()
        return [{**r.row(), "load": label, **tags} for r in [*self.warmup, *self.results]]

    @classmethod
    def pooled(cls, runs: Sequence["LoadRun"]) -> "LoadRun":
        """Repeats of one load spec as one run: every request, the durations summed (so a
        throughput is requests over the time spent measuring, and percentiles are over all rows);
        the client figures are the worst repeat's."""
        if not runs:
            raise ValueError("no runs to pool")
        return cls(spec=runs[0].spec, results=[r for lr in runs for r in lr.results],
                   warmup=[r for lr in runs for r in lr.warmup], duration_s=sum(lr.duration_s for lr in runs),
                   started_at=runs[0].started_at, client=_pooled_client([lr.client for lr in runs]))


def _connector(max_concurrency: int | None) -> aiohttp.TCPConnector:
    # One pooled connection per in-flight request; keep-alive so connection set-up is not
    # charged to TTFT after the first request on a connection (as vLLM's client does).
    return aiohttp.TCPConnector(limit=max_concurrency or 0, limit_per_host=0, ttl_dns_cache=300,
                                keepalive_timeout=60, enable_cleanup_closed=True)


class _GcPaused:
    """Automatic garbage collection off for the timed window (run_load has collected and frozen
    the heap just before): a collection mid-run stalls the loop and would read as latency."""

    def __enter__(self) -> None:
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was:
            gc.enable()


def _pool_size(spec: LoadSpec, n: int, warm: Sequence[RequestResult], out_len: int) -> int:
    """Connections to open before the clock starts: the concurrency the point will reach (its
    limit; every request for rate = inf; else rate x a warm-up request's E2EL, Little's law, with
    margin), at most 512; more are opened in the background as the run needs them."""
    if spec.max_concurrency is not None:
        return min(spec.max_concurrency, n)
    if math.isinf(spec.request_rate):
        return min(n, 512)
    e2el = max((_e2el_at(r, out_len) for r in warm if r.success), default=0.0)
    return min(n, 512, int(spec.request_rate * (1.5 * e2el + 0.05)) + 8)


def _e2el_at(r: RequestResult, out_len: int) -> float:
    """A warm-up request's E2EL scaled to `out_len` output tokens: its TTFT plus its mean gap
    between tokens for each further token (warm-ups may be shorter than the timed requests)."""
    e2el, ttft, got = r.e2el_s or 0.0, r.ttft_s, r.output_tokens or 0
    if ttft is None or got < 2 or got >= out_len:
        return e2el
    return ttft + (e2el - ttft) / (got - 1) * (out_len - 1)


async def _run_fast(
    ep: Endpoint, prompts: Sequence[str | list[int]], max_tokens: Sequence[int], prompt_tokens: Sequence[int | None],
    spec: LoadSpec, warmup_requests: int, progress: bool, warmup_prompts: list[str | list[int]] | None = None,
    warmup_as_load: bool = False, warmup_max_tokens: int | None = None,
) -> LoadRun:
    loop = asyncio.get_running_loop()
    timer = PreciseTimer(loop)
    eng = _Engine(ep, loop, spec.max_concurrency)
    try:
        warm: list[RequestResult] = []
        if warmup_as_load and warmup_prompts:
            offsets = arrival_offsets(len(warmup_prompts), spec.request_rate, spec.burstiness, spec.seed + 1)
            wreqs = [eng.build(-1 - i, p, max_tokens[i % len(max_tokens)], None) for i, p in enumerate(warmup_prompts)]
            t0 = time.perf_counter()
            for r, off in zip(wreqs, offsets):
                r.due = t0 + off
            await eng.run(wreqs, timer)
            warm = [_fast_result(r, ep.api) for r in wreqs]
        else:
            for i in range(warmup_requests):  # sequential: warms the server, the pool and our code paths
                j = i % len(prompts)
                n_out = warmup_max_tokens or max_tokens[j]
                if warmup_prompts:
                    r = eng.build(-1 - i, warmup_prompts[i % len(warmup_prompts)], n_out, None)
                else:
                    r = eng.build(-1 - i, prompts[j], n_out, prompt_tokens[j])
                r.due = time.perf_counter()
                await eng.run([r], timer)
                warm.append(_fast_result(r, ep.api))
        for r in warm:
            r.warmup = True
        if warm and not any(r.success for r in warm):
            raise EndpointError(f"all {len(warm)} warm-up requests to {ep.url} failed: {warm[0].error}")

        reqs = [eng.build(i, prompts[i], max_tokens[i], prompt_tokens[i]) for i in range(len(prompts))]
        offsets = arrival_offsets(len(prompts), spec.request_rate, spec.burstiness, spec.seed)
        await eng.prefill(_pool_size(spec, len(prompts), warm, max(max_tokens)))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc=spec.label(), leave=False)
            eng.on_done = lambda _r: bar.update(1)
        monitor = _LoopMonitor(timer)
        with _GcPaused():
            monitor.start()
            started_at = time.time()
            t0 = time.perf_counter()
            for r, off in zip(reqs, offsets):
                r.due = t0 + off
            await eng.run(reqs, timer)
            duration = time.perf_counter() - t0
            monitor.stop()
        if bar is not None:
            bar.close()
    finally:
        await eng.close()
        timer.close()
    results = [_fast_result(r, ep.api) for r in reqs]
    client = monitor.stats([r.due for r in reqs], [r.st for r in reqs], spec.request_rate, "fast")
    return LoadRun(spec=spec, results=results, warmup=warm, duration_s=duration, started_at=started_at, client=client)


async def _run_aiohttp(
    ep: Endpoint, prompts: Sequence[str | list[int]], max_tokens: Sequence[int], prompt_tokens: Sequence[int | None],
    spec: LoadSpec, warmup_requests: int, progress: bool, warmup_prompts: list[str | list[int]] | None = None,
    warmup_as_load: bool = False, warmup_max_tokens: int | None = None,
) -> LoadRun:
    timeout = aiohttp.ClientTimeout(total=ep.timeout_s, sock_connect=30)
    timer = PreciseTimer(asyncio.get_running_loop())
    async with aiohttp.ClientSession(connector=_connector(spec.max_concurrency), timeout=timeout,
                                     read_bufsize=1 << 20) as session:
        sem = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        dues: dict[int, float] = {}

        async def send(i: int, prompt: str | list[int], n_out: int, n_in: int | None, at: float, bar: Any) -> RequestResult:
            if at > time.perf_counter():
                await timer.sleep_until(at)
            if sem is None:
                dues[i] = at
                r = await stream_request(session, ep, i, prompt, n_out, n_in)
            else:
                waits = sem.locked()
                async with sem:
                    dues[i] = time.perf_counter() if waits else at  # a slot's wait is the load's, not lateness
                    r = await stream_request(session, ep, i, prompt, n_out, n_in)
            if bar is not None:
                bar.update(1)
            return r

        try:
            warm: list[RequestResult] = []
            if warmup_as_load and warmup_prompts:
                # the timed run's own load, once, untimed: the server meets every batch shape of the
                # point before it is measured (kernels built per shape on first use would otherwise be
                # timed, and the first point would read slower than the same point measured later)
                offsets = arrival_offsets(len(warmup_prompts), spec.request_rate, spec.burstiness, spec.seed + 1)
                t0 = time.perf_counter()
                warm = list(await asyncio.gather(*(
                    send(-1 - i, p, max_tokens[i % len(max_tokens)], None, t0 + offsets[i], None)
                    for i, p in enumerate(warmup_prompts))))
            else:
                for i in range(warmup_requests):  # sequential: warms the server, the pool and our code paths
                    j = i % len(prompts)
                    n_out = warmup_max_tokens or max_tokens[j]
                    if warmup_prompts:
                        r = await stream_request(session, ep, -1 - i, warmup_prompts[i % len(warmup_prompts)], n_out)
                    else:
                        r = await stream_request(session, ep, -1 - i, prompts[j], n_out, prompt_tokens[j])
                    warm.append(r)
            for r in warm:
                r.warmup = True
            if warm and not any(r.success for r in warm):
                raise EndpointError(f"all {len(warm)} warm-up requests to {ep.url} failed: {warm[0].error}")

            offsets = arrival_offsets(len(prompts), spec.request_rate, spec.burstiness, spec.seed)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(prompts), desc=spec.label(), leave=False)
            monitor = _LoopMonitor(timer)
            dues.clear()
            with _GcPaused():
                monitor.start()
                started_at = time.time()
                t0 = time.perf_counter()
                results = await asyncio.gather(*(send(i, prompts[i], max_tokens[i], prompt_tokens[i], t0 + offsets[i], bar)
                                                 for i in range(len(prompts))))
                duration = time.perf_counter() - t0
                monitor.stop()
            if bar is not None:
                bar.close()
        finally:
            timer.close()
    client = monitor.stats([dues[r.index] for r in results], [r.start_s for r in results], spec.request_rate,
                           "aiohttp")
    return LoadRun(spec=spec, results=list(results), warmup=warm, duration_s=duration, started_at=started_at,
                   client=client)


async def _run_load_async(
    ep: Endpoint, prompts: Sequence[str | list[int]], max_tokens: Sequence[int], prompt_tokens: Sequence[int | None],
    spec: LoadSpec, warmup_requests: int, progress: bool, warmup_prompts: list[str | list[int]] | None = None,
    warmup_as_load: bool = False, warmup_max_tokens: int | None = None,
) -> LoadRun:
    run = _run_aiohttp if ep.transport == "aiohttp" else _run_fast
    return await run(ep, prompts, max_tokens, prompt_tokens, spec, warmup_requests, progress, warmup_prompts,
                     warmup_as_load, warmup_max_tokens)


def _in_thread(coro_fn: Any, *args: Any) -> Any:
    """Run a coroutine on a fresh event loop in a worker thread (works under Jupyter too)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn(*args))).result()


def run_load(
    ep: Endpoint,
    prompts: Sequence[str | list[int]],
    max_tokens: int | Sequence[int],
    spec: LoadSpec | None = None,
    prompt_tokens: Sequence[int | None] | None = None,
    warmup_requests: int = 1,
    progress: bool = False,
    warmup_prompts: Sequence[str | list[int]] | None = None,
    warmup_as_load: bool = False,
    warmup_max_tokens: int | None = None,
) -> LoadRun:
    """Send `prompts` with the arrival process of `spec`; return every row and the client's own
    figures (`LoadRun.client`). Raises EndpointError only when nothing could be measured (all
    warm-up requests failed).

    Warm-up requests send `warmup_prompts` when given, else the first prompts again; against a
    server with prefix caching on, the latter makes the timed requests for those prompts cache hits.
    `warmup_as_load`: the warm-up prompts go out with the timed run's arrival process and
    concurrency (all of them, untimed) instead of `warmup_requests` one at a time.
    `warmup_max_tokens`: the one-at-a-time warm-ups' output length (None: the timed requests'):
    a warm-up needs a prefill and a decode step to warm the server and the connections, and on a
    slow deployment full-length ones cost whole seconds before every point."""
    if not prompts:
        raise ValueError("no prompts to send: num_prompts must be >= 1")
    spec = spec or LoadSpec()
    if spec.max_concurrency is not None and spec.max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 or None, got {spec.max_concurrency}")
    if ep.transport not in ("fast", "aiohttp"):
        raise ValueError(f"transport must be 'fast' or 'aiohttp', got {ep.transport!r}")
    mt = [int(max_tokens)] * len(prompts) if isinstance(max_tokens, int) else [int(x) for x in max_tokens]
    if len(mt) != len(prompts):
        raise ValueError(f"{len(mt)} max_tokens values for {len(prompts)} prompts")
    if any(x < 1 for x in mt):
        raise ValueError("max_tokens must be >= 1 for every request")
    if warmup_max_tokens is not None and warmup_max_tokens < 1:
        raise ValueError(f"warmup_max_tokens must be >= 1 or None, got {warmup_max_tokens}")
    pt = list(prompt_tokens) if prompt_tokens is not None else [None] * len(prompts)
    warm = list(warmup_prompts) if warmup_prompts else None
    if warmup_as_load and not warm:
        raise ValueError("warmup_as_load needs warmup_prompts (fresh prompts: a replay of the timed ones "
                         "would make them prefix-cache hits)")
    # As `vllm bench serve` does: collect now and freeze what exists, so a garbage-collection pause
    # (an engine closed just before leaves a lot of garbage in this process) cannot stall the
    # client while it times the streams: it would read as server latency. Automatic collection is
    # also off for the timed window itself (_GcPaused).
    gc.collect()
    gc.freeze()
    try:
        return _in_thread(_run_load_async, ep, list(prompts), mt, pt, spec, warmup_requests, progress, warm,
                          warmup_as_load, warmup_max_tokens)
    finally:
        gc.unfreeze()


# --------------------------------------------------------------------------- truth and calibration


def truth_figures(records: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]],
                  nominal_ttft_ms: float | None = None, nominal_tpot_ms: float | None = None,
                  per_request: bool = False) -> dict[str, Any]:
    """A client's timing against what the server recorded (`simserver` events), request by request.

    `records`: one dict per successful client request: `key` (the completion id, or the
    X-Request-ID the client sent), `ttft_ms`, `tpot_ms` (None when undefined) and, where the
    client's start is on this machine's monotonic clock (time.perf_counter), `start_s`.
    A record is matched to the event with that `id` or `x_request_id`. Per matched request:

    * own (the client's own share of TTFT) = client TTFT - server TTFT, where server TTFT = first
      token write - request received. It splits into send (client start -> the request's first
      bytes reached the server process) + receive (server's write -> the client saw the chunk)
      when `start_s` is known. All three are >= 0 up to clock reads: the client cannot see a
      token before it is written, nor the server a request before it is sent;
    * TPOT error = client TPOT - server TPOT ((last write - first write) / (tokens - 1)).

    `per_request`: also `requests`, one row per matched request (its key as `response_id`, client and server TTFT,
    own share, send and receive), the raw rows the medians are taken over.
    """
    by_key: dict[str, dict[str, Any]] = {}
    for e in events:
        by_key[e["id"]] = e
        if e.get("x_request_id"):
            by_key[e["x_request_id"]] = e
    own, send, recv, c_ttft, s_ttft, c_tpot, s_tpot, d_tpot = [], [], [], [], [], [], [], []
    rows: list[dict[str, Any]] = []
    for r in records:
        e = by_key.get(r.get("key"))  # type: ignore[arg-type]
        if e is None or not e.get("writes") or r.get("ttft_ms") is None:
            continue
        rx = e.get("received", e["arrival"])
        srv_ttft = (e["writes"][0] - rx) * 1e3
        own.append(r["ttft_ms"] - srv_ttft)
        c_ttft.append(r["ttft_ms"])
        s_ttft.append(srv_ttft)
        if r.get("start_s") is not None:
            send.append((rx - r["start_s"]) * 1e3)
            recv.append(r["ttft_ms"] - srv_ttft - send[-1])
        if per_request:
            rows.append({"response_id": r["key"], "ttft_ms": r["ttft_ms"], "server_ttft_ms": srv_ttft,
                         "client_overhead_ms": own[-1],
                         "client_send_ms": send[-1] if r.get("start_s") is not None else None,
                         "client_receive_ms": recv[-1] if r.get("start_s") is not None else None})
        w = e["writes"]
        if r.get("tpot_ms") is not None and len(w) > 1 and e.get("tokens", 0) > 1:
            st = (w[-1] - w[0]) * 1e3 / (e["tokens"] - 1)
            c_tpot.append(r["tpot_ms"])
            s_tpot.append(st)
            d_tpot.append(r["tpot_ms"] - st)
    a = lambda v: np.asarray(v, dtype=float)  # noqa: E731
    med = lambda v: float(np.median(a(v))) if v else None  # noqa: E731
    pct = lambda v, q: float(np.percentile(a(v), q)) if v else None  # noqa: E731
    rel = lambda x, ref: None if x is None or not ref else x / ref * 100.0  # noqa: E731
    out: dict[str, Any] = {
        "matched_count": len(own),
        "client_overhead_median_ms": med(own), "client_overhead_p90_ms": pct(own, 90),
        "client_overhead_p99_ms": pct(own, 99), "client_overhead_max_ms": pct(own, 100),
        "client_send_median_ms": med(send), "client_send_p90_ms": pct(send, 90), "client_send_p99_ms": pct(send, 99),
        "client_receive_median_ms": med(recv), "client_receive_p90_ms": pct(recv, 90),
        "client_receive_p99_ms": pct(recv, 99),
        "median_ttft_ms": med(c_ttft), "server_median_ttft_ms": med(s_ttft),
        "median_tpot_ms": med(c_tpot), "server_median_tpot_ms": med(s_tpot),
    }
    out["ttft_error_ms"] = None if not own else out["median_ttft_ms"] - out["server_median_ttft_ms"]
    out["ttft_error_pct"] = rel(out["ttft_error_ms"], out["server_median_ttft_ms"])
    out["tpot_error_ms"] = med(d_tpot)
    out["tpot_error_pct"] = rel(out["tpot_error_ms"], out["server_median_tpot_ms"])
    if nominal_ttft_ms is not None:
        out["ttft_vs_nominal_ms"] = None if not own else out["median_ttft_ms"] - nominal_ttft_ms
        out["ttft_vs_nominal_pct"] = rel(out["ttft_vs_nominal_ms"], nominal_ttft_ms)
    if nominal_tpot_ms is not None:
        out["tpot_vs_nominal_ms"] = None if not c_tpot else out["median_tpot_ms"] - nominal_tpot_ms
        out["tpot_vs_nominal_pct"] = rel(out["tpot_vs_nominal_ms"], nominal_tpot_ms)
    if per_request:
        out["requests"] = rows
    return out


def result_records(results: Sequence[RequestResult]) -> list[dict[str, Any]]:
    """`truth_figures` records of this client's successful rows (matched by completion id)."""
    return [{"key": r.response_id, "ttft_ms": r.ttft_s * 1e3 if r.ttft_s is not None else None,
             "tpot_ms": None if r.tpot_s is None else r.tpot_s * 1e3, "start_s": r.start_s}
            for r in results if r.success and r.response_id]


def calibrate(rates: Sequence[float], num_prompts: int = 100, input_len: int = 32, output_len: int = 16, *,
              ttft_ms: float = 50.0, tpot_ms: float = 10.0, burstiness: float = 1.0, seed: int = 0,
              api: Api = "completions", transport: Transport = "fast", max_seconds_per_rate: float | None = 2.0,
              min_requests: int = 20, warmup_requests: int = 1) -> list[dict[str, Any]]:
    """The client's own error at each planned rate, against the in-package simulated server.

    Starts `ascendeval.simserver` in a subprocess (TTFT `ttft_ms`, `tpot_ms` per token, one token
    per chunk), runs this client at each rate (Poisson by default, prompts of `input_len` token ids,
    `output_len` tokens each) and matches every request to the server's own record by completion id
    (`truth_figures`). Per rate: the client's own share of TTFT (`client_overhead_median_ms`,
    `_p90_ms`, `_p99_ms`, split into `client_send_*` and `client_receive_*`), TTFT and TPOT error
    against the server's record (`ttft_error_ms/_pct`, `tpot_error_ms/_pct`) and against the nominal
    delays (`ttft_vs_nominal_ms`, `tpot_vs_nominal_ms`), the client's own stats of the point
    (`client`, see `client_stats`), what it cost (`seconds`), and the matched requests' own rows
    (`requests`, see `truth_figures`).

    Cost: about 0.5 s to start the server, then per rate one warm-up request (ttft + output_len x
    tpot) plus num_requests / rate seconds plus one stream; `max_seconds_per_rate` (default 2 s)
    caps the requests of a slow rate at rate x that (at least `min_requests`, default 20), so 100
    requests at 50 req/s take ~2.5 s and a rate of 10 sends 20 requests. Rate inf sends them all at
    once.
    """
    from .simserver import SimProcess

    if not rates:
        raise ValueError("no rates to calibrate")
    if num_prompts < 1 or input_len < 1 or output_len < 1 or min_requests < 1:
        raise ValueError("num_prompts, input_len, output_len and min_requests must be >= 1")
    out: list[dict[str, Any]] = []
    with SimProcess(ttft_ms=ttft_ms, tpot_ms=tpot_ms) as sim:
        ep = Endpoint(sim.url, "sim-model", api=api, transport=transport)
        for k, rate in enumerate(rates):
            t_start = time.perf_counter()
            n = num_prompts
            if max_seconds_per_rate is not None and not math.isinf(rate):
                n = min(n, max(min_requests, int(rate * max_seconds_per_rate)))
            if api == "chat":
                prompts: list[str | list[int]] = [" ".join(["tok"] * input_len) for _ in range(n)]
            else:
                prompts = [[(7 * i + 13 * j) % 1000 + 1 for j in range(input_len)] for i in range(n)]
            sim.stats(clear=True)
            lr = run_load(ep, prompts, output_len, LoadSpec(rate, burstiness, None, seed + k),
                          prompt_tokens=[input_len] * n, warmup_requests=warmup_requests)
            events = sim.stats(clear=True)["events"]
            row: dict[str, Any] = {"request_rate_req_per_s": None if math.isinf(rate) else float(rate),
                                   "request_rate_label": "inf" if math.isinf(rate) else f"{rate:g}",
                                   "num_requests": n, "input_len": input_len, "output_len": output_len,
                                   "completed_count": sum(r.success for r in lr.results),
                                   "failed_count": sum(not r.success for r in lr.results),
                                   "duration_s": lr.duration_s}
            row.update(truth_figures(result_records(lr.results), events, ttft_ms, tpot_ms, per_request=True))
            row["client"] = lr.client
            row["seconds"] = time.perf_counter() - t_start
            out.append(row)
    return out


def guard_figure(sweep: str, load: str) -> str:
    """The output guard's name of a serving load point's figures: `serving_main` for the main
    point (the record's `serving_main`), `serving.<sweep> <load>` for a sweep point
    (`serving.rate rate=4`, `serving.concurrency rate=inf conc=2`)."""
    return "serving_main" if sweep == "main" else f"serving.{sweep} {load}"


def point_figure(point: dict[str, Any]) -> str:
    """`guard_figure` of a recorded serving point (a `serving` entry of the performance record)."""
    rate = point.get("request_rate_label")
    spec = LoadSpec(math.inf if rate in (None, "inf") else float(rate), max_concurrency=point.get("max_concurrency"))
    return guard_figure(point.get("sweep") or "", spec.label())


def guard_outputs(results: Sequence[RequestResult], prompts: Sequence[str | list[int]], tokenizer: Any,
                  api: Api = "completions") -> list[tuple[list[int], list[int]]]:
    """(prompt ids, output ids) of each successful timed request, for the correctness guard
    (output_guard.OutputGuard.keep). `prompts[r.index]` is what request `r` sent. Ids are the
    server's own where it returned them (vLLM's return_token_ids), else the text re-tokenized with
    the served model's `tokenizer` (a chat prompt through its chat template). A request is counted
    but not compared when its ids are unknown: no tokenizer, or a re-tokenized text whose length
    is not the server's own token count (text does not always round-trip: tokens that decode to
    nothing or to part of a character). Empty means no token, by the server's count where it gave one."""
    out = []
    for r in results:
        if not r.success or r.warmup or not 0 <= r.index < len(prompts):
            continue
        out_ids = r.output_token_ids
        ids_known = out_ids is not None
        if out_ids is None:
            if not r.output_text and not r.output_tokens:
                out_ids, ids_known = [], True
            elif tokenizer is not None and r.output_text:
                out_ids = tokenizer.encode(r.output_text, add_special_tokens=False)
                ids_known = r.output_tokens is None or len(out_ids) == r.output_tokens
            if not ids_known:  # not empty, ids unknown: one placeholder so it is not counted as empty
                out_ids = [0]
        prompt_ids = r.prompt_token_ids
        sent = prompts[r.index]
        if prompt_ids is None and isinstance(sent, list):
            prompt_ids = list(sent)
        elif prompt_ids is None and tokenizer is not None:
            try:
                if api == "chat":
                    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": sent}],
                                                               add_generation_prompt=True, tokenize=True)
                else:
                    prompt_ids = tokenizer.encode(sent)
                prompt_ids = list(prompt_ids) if prompt_ids and isinstance(list(prompt_ids)[0], int) else []
            except Exception:  # noqa: BLE001 - no chat template: counted, not compared
                prompt_ids = []
        if not ids_known:
            prompt_ids = []  # the placeholder output must not be compared
        out.append((prompt_ids or [], list(out_ids)))
    return out


# --------------------------------------------------------------------------- endpoint checks


async def _get_json(url: str, api_key: str | None, timeout_s: float) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
        async with s.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise EndpointError(f"GET {url} answered HTTP {resp.status}")
            return await resp.json(content_type=None)


def list_models(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """Model ids served at `base_url` (GET /v1/models). One-line EndpointError when unreachable."""
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    url = f"{root}/v1/models"
    try:
        data = _in_thread(_get_json, url, api_key, timeout_s)
    except EndpointError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise EndpointError(
            f"endpoint {root} unreachable ({type(exc).__name__}: {exc}); start the server or fix "
            f"performance.serving.url / server.url"
        ) from None
    ids = [m.get("id") for m in (data or {}).get("data", []) if isinstance(m, dict)]
    if not ids:
        raise EndpointError(f"{url} lists no models; is this an OpenAI-compatible server?")
    return ids


# Where servers offer a prefix-cache reset: vLLM (dev routes, VLLM_SERVER_DEV_MODE=1; answers
# {"success": bool}, false while blocks are still held) and SGLang (/flush_cache, 200 on success).
CACHE_RESET_ROUTES = (("/reset_prefix_cache", "vLLM"), ("/flush_cache", "SGLang"))


async def _post_status(url: str, api_key: str | None, timeout_s: float) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
        async with s.post(url, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text


def reset_prefix_cache(base_url: str, api_key: str | None = None, attempts: int = 5,
                       timeout_s: float = 10.0) -> tuple[bool | None, str]:
    """Empty the server's prefix cache before a load point, so no point is timed on what an
    earlier one left cached. (True, route) when it did; (False, why) when the server has the
    route but did not reset (retried: vLLM refuses while blocks are held); (None, why) when it
    offers no reset (then fresh prompts alone keep points clean)."""
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    missing = []
    for route, _server in CACHE_RESET_ROUTES:
        last = ""
        for attempt in range(attempts):
            try:
                status, body = _in_thread(_post_status, f"{root}{route}", api_key, timeout_s)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                return None, f"POST {route} failed: {type(exc).__name__}: {exc}"
            if status in (404, 405):
                missing.append(f"{route} HTTP {status}")
                break
            if status == 200 and not (isinstance(body, dict) and body.get("success") is False):
                return True, route
            last = f"POST {route} answered HTTP {status}: {str(body)[:120]}"
            time.sleep(0.2 * (attempt + 1))
        else:
            return False, last
    return None, f"the server offers no prefix-cache reset ({', '.join(missing)}); fresh prompts keep the points apart"


def served_model(base_url: str, wanted: str | None = None, api_key: str | None = None) -> str:
    """The model id to send requests for: `wanted` (the params' served_model_name) when the server
    serves it, else the first one it lists."""
    models = list_models(base_url, api_key)
    return wanted if wanted in models else models[0]
