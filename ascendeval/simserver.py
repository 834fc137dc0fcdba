"""A streaming OpenAI-compatible server with KNOWN timing, to check the load generator's truth.

It serves `/v1/completions`, `/v1/chat/completions` (streamed, or whole when `stream` is false), `/v1/models` and
`/health` on 127.0.0.1 over real HTTP. Every request produces exactly `max_tokens` tokens; token
i is due at  arrival + ttft + i * tpot  (absolute times, so the server's own overhead does not
accumulate over a stream). A chunk is written when its last token is due. So the truth is:

    TTFT = ttft,  TPOT = tpot,  ITL per chunk = tokens_per_chunk * tpot,  per-token ITL = tpot.

Knobs for the bad cases: `usage=False` (no usage chunk), `fail_every=k` (every k-th request
answers HTTP 500), `die_after=k` (after k requests the server drops every connection, new and
in-flight, like a crashed process).

Run in a thread (`SimServer(...).start()`) or as a process for the least interference with the
client: `python -m ascendeval.simserver --ttft-ms 50 --tpot-ms 10` prints its URL.
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
from typing import Any

from aiohttp import web


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
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._timer: _PreciseTimer | None = None

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/sim/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests_seen": self.requests_seen, "events": self.events})

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
        self.requests_seen += 1
        n_req = self.requests_seen
        spec = self.spec
        if self._dead or (spec.die_after and n_req > spec.die_after):
            self._dead = True
            self._kill(request)
            return web.Response(status=500)
        body: dict[str, Any] = await request.json()
        if spec.fail_every and n_req % spec.fail_every == 0:
            return web.json_response({"error": {"message": "simulated failure", "code": 500}}, status=500)
        n = int(body.get("max_tokens") or 16)
        prompt = body.get("prompt") if not chat else json.dumps(body.get("messages"))
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and spec.usage
        kv_in = body.get("kv_transfer_params")
        if body.get("stream") is False:  # streamed unless asked otherwise, as before
            return await self._whole(body, chat, n_req, arrival, n, prompt_tokens, kv_in)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def chunk(text: str, finish: str | None, ntok: int) -> bytes:
            if chat:
                choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": text, "finish_reason": finish}
                obj = "text_completion"
            if body.get("return_token_ids"):
                choice["token_ids"] = list(range(ntok))
            msg = {"id": f"sim-{n_req}", "object": obj, "model": spec.model, "choices": [choice]}
            return b"data: " + json.dumps(msg).encode() + b"\n\n"

        if chat:  # OpenAI chat streams start with a role-only chunk: it is not a token
            await resp.write(b"data: " + json.dumps({"id": f"sim-{n_req}", "object": "chat.completion.chunk",
                                                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                                  "finish_reason": None}]}).encode() + b"\n\n")
        sent = 0
        writes: list[float] = []
        k = max(1, spec.tokens_per_chunk)
        while sent < n:
            take = min(k, n - sent)
            last_idx = sent + take - 1
            due = arrival + spec.ttft_s + last_idx * spec.tpot_s
            if due > time.perf_counter():
                assert self._timer is not None
                await self._timer.wait_until(due)
            if self._dead:  # the "process" died while this stream was in flight
                self._kill(request)
                return resp
            sent += take
            writes.append(time.perf_counter())
            await resp.write(chunk(spec.token_text * take, "length" if sent == n else None, take))
        if include_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
            await resp.write(b"data: " + json.dumps({"id": f"sim-{n_req}", "choices": [], "usage": usage}).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self.events.append({"id": f"sim-{n_req}", "arrival": arrival, "writes": writes, "tokens": n,
                            "kv_transfer_params": kv_in})
        return resp

    async def _whole(self, body: dict[str, Any], chat: bool, n_req: int, arrival: float, n: int,
                     prompt_tokens: int, kv_in: dict[str, Any] | None) -> web.Response:
        """A non-streaming answer, due when its last token is. Like a vLLM prefill instance, a
        request asking to hand its KV to a remote decoder (`do_remote_decode`) gets
        `kv_transfer_params` back that say where the KV is."""
        spec = self.spec
        due = arrival + spec.ttft_s + (n - 1) * spec.tpot_s
        if due > time.perf_counter():
            assert self._timer is not None
            await self._timer.wait_until(due)
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
        self.events.append({"id": f"sim-{n_req}", "arrival": arrival, "writes": [time.perf_counter()], "tokens": n,
                            "kv_transfer_params": kv_in})
        return web.json_response(out)

    # ------------------------------------------------------------------ lifecycle

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        self._timer = _PreciseTimer(asyncio.get_running_loop())
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stopped.wait()
        await self._runner.cleanup()
        self._timer.stop()

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--tpot-ms", type=float, default=10.0)
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    # As its own process the server has the GIL to itself except for the timer thread; a short
    # switch interval lets that thread take the GIL promptly when a deadline falls due.
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
