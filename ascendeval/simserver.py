"""A streaming OpenAI-compatible server with KNOWN timing, to check the load generator's truth.

It serves `/v1/completions`, `/v1/chat/completions` (streamed with `stream: true`, else whole), `/v1/models` and
`/health` on 127.0.0.1 over real HTTP. Every request produces exactly `max_tokens` tokens (or
`max_completion_tokens`, the name AIPerf and newer OpenAI clients send); token i is due at
received + ttft + i * tpot  (absolute times, so the server's own overhead does not accumulate over
a stream). A chunk is written when its last token is due. So the truth is:

    TTFT = ttft,  TPOT = tpot,  ITL per chunk = tokens_per_chunk * tpot,  per-token ITL = tpot.

What the server did is recorded per completed request (`/sim/stats`, `events`), on the machine-wide
monotonic clock (time.perf_counter), so a client on the same machine can be checked against it:
`received` = when the first bytes of the request reached this process (the socket read, before
any HTTP parsing), `arrival` = when the handler started, `writes` = for each token chunk, the time
just before its bytes were handed to the socket (the chunk already serialized), `id` = the
completion id in the stream, `x_request_id` = the request's X-Request-ID header (vLLM's benchmark
and AIPerf send one). `/sim/stats?clear=1` also empties the record.

Request shapes: completions (`prompt` text or token ids) and chat (`messages`); `stream_options`
(`include_usage`; `continuous_usage_stats`, which GuideLLM sends, is accepted and ignored); vLLM's
`ignore_eos`, `return_token_ids`, `kv_transfer_params`; other fields are ignored.

Knobs for the bad cases: `usage=False` (no usage chunk), `fail_every=k` (every k-th request
answers HTTP 500), `max_stops=k` (more than k stop strings: HTTP 400, as vLLM answers), `die_after=k` (after k requests the server drops every connection, new and
in-flight, like a crashed process).

Run in a thread (`SimServer(...).start()`) or as a process for the least interference with the
client: `python -m ascendeval.simserver --ttft-ms 50 --tpot-ms 10` prints its URL.

Timing: deadlines are kept by `loadgen.PreciseTimer` (a timerfd the server's own loop watches, so
it wakes on time without a thread; asyncio's timers wake up to 1 ms late), and each chunk is written
by that timer's callback straight to the socket (chunked framing done here), instead of waking a
coroutine per chunk: at 500 req/s x 32 tokens the server writes 16,000 chunks a second on a shared
2-core machine, and its own cost there is what a client on the same machine competes with.
Where no timerfd is available a thread keeps the deadlines (`_PreciseTimer`).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from .loadgen import PreciseTimer


@dataclass
class SimSpec:
    ttft_s: float = 0.050
    tpot_s: float = 0.010
    tokens_per_chunk: int = 1
    usage: bool = True
    fail_every: int = 0
    die_after: int = 0
    model: str = "sim-model"
    token_text: str = " tok"
    max_stops: int = 0  # > 0: more stop strings than this are refused with HTTP 400, as vLLM does (0: no limit)


class _PreciseTimer:
    """Wakes coroutines at an absolute `time.perf_counter()` deadline, to ~0.1 ms.

    asyncio's own timers wake up to 1 ms late: epoll takes its timeout in whole milliseconds and
    the loop rounds up, so `asyncio.sleep` made this server's "known" TTFT about 0.7 ms longer than
    nominal (50.66 ms measured for 50 ms). One thread waiting on a condition variable (nanosecond
    timeouts) resolves each deadline's future through `call_soon_threadsafe`, which wakes the loop
    at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="simserver-timer", daemon=True)
        self._thread.start()

    def wait_until(self, due: float) -> "asyncio.Future[None]":
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), fut))
            self._cond.notify()
        return fut

    def call_at(self, due: float, callback: Callable[..., Any], *args: Any) -> None:
        fut = self.wait_until(due)
        fut.add_done_callback(lambda _f: callback(*args))

    def sleep_until(self, due: float) -> "asyncio.Future[None]":
        return self.wait_until(due)

    def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(5)

    @staticmethod
    def _resolve(fut: "asyncio.Future[None]") -> None:
        if not fut.done():  # a cancelled waiter (client went away) is simply skipped
            fut.set_result(None)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.perf_counter()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, fut = heapq.heappop(self._heap)
                self._loop.call_soon_threadsafe(self._resolve, fut)


# where a request's arrival stamp is kept (aiohttp >= 3.12 wants typed keys; older ones take a str)
_RECEIVED: Any = web.RequestKey("sim_received", float) if hasattr(web, "RequestKey") else "sim_received"


class _Stamped(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol to note when the first bytes of each request reach
    this process (`rx`), before aiohttp parses anything. The handler takes the stamp and clears it
    once it has read the body; clients do not pipeline, so the next bytes are the next request."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.rx: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.rx is None:
            self.rx = time.perf_counter()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class SimServer:
    def __init__(self, spec: SimSpec | None = None, host: str = "127.0.0.1", port: int = 0):
        self.spec = spec or SimSpec()
        self.host, self.port = host, port
        self.requests_seen = 0
        # what the server actually did, per completed stream: times on the machine-wide monotonic
        # clock (time.perf_counter is CLOCK_MONOTONIC on Linux, comparable across processes)
        self.events: list[dict[str, Any]] = []
        self._dead = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._timer: Any = None  # loadgen.PreciseTimer, or the thread timer where no timerfd exists

    # ------------------------------------------------------------------ app

    @staticmethod
    @web.middleware
    async def _received(request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request, whatever its route: take the time its first bytes arrived (`_Stamped`),
        read its whole body, then clear the stamp for the next request on the connection."""
        proto = request.transport.get_protocol() if request.transport is not None else None
        request[_RECEIVED] = getattr(proto, "rx", None) or time.perf_counter()
        if request.can_read_body:
            await request.read()  # kept by aiohttp for request.json()
        if isinstance(proto, _Stamped):
            proto.rx = None
        return await handler(request)

    def app(self) -> web.Application:
        # 8k-token prompts as token ids, and more
        app = web.Application(client_max_size=64 << 20, middlewares=[self._received])
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/sim/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        out = {"requests_seen": self.requests_seen, "events": self.events}
        if request.query.get("clear") in ("1", "true"):
            self.events = []
        return web.json_response(out)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.spec.model, "object": "model"}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, chat=True)

    def _kill(self, request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()  # RST-like close: the client sees the connection die

    async def _stream(self, request: web.Request, chat: bool) -> web.StreamResponse:
        arrival = time.perf_counter()
        received = request[_RECEIVED]
        self.requests_seen += 1
        n_req = self.requests_seen
        spec = self.spec
        if self._dead or (spec.die_after and n_req > spec.die_after):
            self._dead = True
            self._kill(request)
            return web.Response(status=500)
        body: dict[str, Any] = await request.json()
        stops = body.get("stop")
        if spec.max_stops and isinstance(stops, list) and len(stops) > spec.max_stops:
            msg = f"1 validation error: body.stop: List should have at most {spec.max_stops} items after validation"
            return web.json_response({"error": {"message": msg, "code": 400}}, status=400)
        if spec.fail_every and n_req % spec.fail_every == 0:
            return web.json_response({"error": {"message": "simulated failure", "code": 500}}, status=500)
        n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        prompt = body.get("prompt") if not chat else json.dumps(body.get("messages"))
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and spec.usage
        kv_in = body.get("kv_transfer_params")
        xid = request.headers.get("X-Request-ID")
        if not body.get("stream"):  # OpenAI's default, as vLLM: whole unless `stream: true` (lm-eval sends none)
            return await self._whole(body, chat, n_req, arrival, received, n, prompt_tokens, kv_in, xid)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)  # status line and headers (Transfer-Encoding: chunked) are written
        transport = request.transport
        loop = asyncio.get_running_loop()
        rid = f"sim-{n_req}"
        want_ids = bool(body.get("return_token_ids"))

        def frame(payload: bytes) -> bytes:  # one HTTP/1.1 chunk: what aiohttp's writer would send
            return b"%x\r\n" % len(payload) + payload + b"\r\n"

        def chunk(text: str, finish: str | None, ntok: int) -> bytes:
            if chat:
                choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": text, "finish_reason": finish}
                obj = "text_completion"
            if want_ids:
                choice["token_ids"] = list(range(ntok))
            msg = {"id": rid, "object": obj, "model": spec.model, "choices": [choice]}
            return frame(b"data: " + json.dumps(msg).encode() + b"\n\n")

        if chat:  # OpenAI chat streams start with a role-only chunk: it is not a token
            transport.write(frame(b"data: " + json.dumps({  # type: ignore[union-attr]
                "id": rid, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}).encode()
                + b"\n\n"))
        k = max(1, spec.tokens_per_chunk)
        full = chunk(spec.token_text * k, None, k)  # every chunk but the last is the same bytes
        writes: list[float] = []
        done: asyncio.Future[bool] = loop.create_future()
        sent = 0
        timer = self._timer

        def step() -> None:
            nonlocal sent
            if done.done():
                return
            if self._dead or transport is None or transport.is_closing():  # died, or the client went away
                done.set_result(False)
                return
            take = min(k, n - sent)
            data = full if (take == k and sent + take < n) else chunk(spec.token_text * take, "length" if sent + take == n else None, take)
            sent += take
            writes.append(time.perf_counter())
            transport.write(data)
            if sent >= n:
                done.set_result(True)
                return
            timer.call_at(received + spec.ttft_s + (sent + min(k, n - sent) - 1) * spec.tpot_s, step)

        timer.call_at(received + spec.ttft_s + (min(k, n) - 1) * spec.tpot_s, step)
        try:
            ok = await done
        finally:
            if not done.done():
                done.set_result(False)
        if not ok:
            if self._dead:  # the "process" died while this stream was in flight
                self._kill(request)
            return resp
        if include_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
            transport.write(frame(b"data: " + json.dumps({"id": rid, "choices": [], "usage": usage}).encode() + b"\n\n"))  # type: ignore[union-attr]
        transport.write(frame(b"data: [DONE]\n\n"))  # type: ignore[union-attr]
        # recorded before the last chunk goes out: a client that has read the whole answer finds
        # its event (appended after write_eof, a reader could ask /sim/stats first)
        self.events.append({"id": rid, "received": received, "arrival": arrival, "writes": writes, "tokens": n,
                            "x_request_id": xid, "kv_transfer_params": kv_in})
        await resp.write_eof()
        return resp

    async def _whole(self, body: dict[str, Any], chat: bool, n_req: int, arrival: float, received: float, n: int,
                     prompt_tokens: int, kv_in: dict[str, Any] | None, xid: str | None) -> web.Response:
        """A non-streaming answer, due when its last token is. Like a vLLM prefill instance, a
        request asking to hand its KV to a remote decoder (`do_remote_decode`) gets
        `kv_transfer_params` back that say where the KV is."""
        spec = self.spec
        due = received + spec.ttft_s + (n - 1) * spec.tpot_s
        if due > time.perf_counter():
            await self._timer.sleep_until(due)
        text = spec.token_text * n
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"} if chat
                  else {"index": 0, "text": text, "finish_reason": "length"})
        out: dict[str, Any] = {"id": f"sim-{n_req}", "object": "chat.completion" if chat else "text_completion",
                               "model": spec.model, "choices": [choice],
                               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                         "total_tokens": prompt_tokens + n}}
        if kv_in and kv_in.get("do_remote_decode"):
            out["kv_transfer_params"] = {"do_remote_prefill": True, "do_remote_decode": False,
                                         "remote_engine_id": "sim", "remote_block_ids": [n_req],
                                         "remote_host": "127.0.0.1", "remote_port": 0}
        self.events.append({"id": f"sim-{n_req}", "received": received, "arrival": arrival,
                            "writes": [time.perf_counter()], "tokens": n, "x_request_id": xid,
                            "kv_transfer_params": kv_in})
        return web.json_response(out)

    # ------------------------------------------------------------------ lifecycle

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        timer = PreciseTimer(loop)
        if timer.precise:
            self._timer = timer
        else:
            timer.close()
            self._timer = _PreciseTimer(loop)
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None
        self._server = await loop.create_server(lambda: _Stamped(factory()), self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopped.wait()
        self._server.close()
        await self._runner.cleanup()
        self._timer.close()

    def _thread_main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SimServer":
        self._thread = threading.Thread(target=self._thread_main, name="simserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("simulated server did not start within 10 s")
        if self._error:
            raise RuntimeError(f"simulated server failed to start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop and self._stopped and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimProcess:
    """The simulated server in its own process (`python -m ascendeval.simserver`), so it does not
    share a GIL or an event loop with the client it checks. `url` once started; `stats(clear)`
    fetches its record (`/sim/stats`); `stop()` ends it. A context manager."""

    def __init__(self, ttft_ms: float = 50.0, tpot_ms: float = 10.0, tokens_per_chunk: int = 1,
                 start_timeout_s: float = 30.0):
        self.args = ["--ttft-ms", str(ttft_ms), "--tpot-ms", str(tpot_ms), "--tokens-per-chunk", str(tokens_per_chunk)]
        self.start_timeout_s = start_timeout_s
        self.proc: Any = None
        self.url = ""

    def start(self) -> "SimProcess":
        import os
        import select
        import subprocess

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                        env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "ascendeval.simserver", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], self.start_timeout_s)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http"):
            err = ""
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() or "").strip().splitlines()[-1:]  # type: ignore[assignment]
            self.stop()
            raise RuntimeError(f"simulated server process did not start: {err or 'no URL within the timeout'}")
        self.url = line
        return self

    def stats(self, clear: bool = False) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/sim/stats{'?clear=1' if clear else ''}", timeout=30) as r:
            return json.load(r)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001 - it must go
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()

    def __enter__(self) -> "SimProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--tpot-ms", type=float, default=10.0)
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    # As its own process the server has the GIL to itself (with a timerfd there is no timer thread;
    # where the thread timer stands in, a short switch interval lets it take the GIL promptly).
    sys.setswitchinterval(0.0005)
    spec = SimSpec(ttft_s=args.ttft_ms / 1000, tpot_s=args.tpot_ms / 1000, tokens_per_chunk=args.tokens_per_chunk)
    srv = SimServer(spec, port=args.port).start()
    print(srv.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
