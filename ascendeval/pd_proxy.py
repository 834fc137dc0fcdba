"""A small disaggregated-prefill proxy: one prefill (P) server, one decode (D) server, one URL.

Disaggregated prefill needs both instances live at once and something in front of them that
runs each request twice: on P with `max_tokens=1` (it computes the prompt's KV and hands it to
the KV connector), then on D with the `kv_transfer_params` P returned (D loads the KV instead of
recomputing it and decodes). This is the protocol of vLLM's and vllm-ascend's example proxies
(`examples/disaggregated_prefill_v1/load_balance_proxy_server_example.py` in vllm-ascend: the P
request carries `kv_transfer_params={"do_remote_decode": True, "do_remote_prefill": False, ...}`,
D gets what P's response carried). Connectors that need no hand-off (vLLM's ExampleConnector
stores KV in files keyed by the prompt) work through it unchanged.

The proxy also times each request's parts, which is what the features section reports: the P
round trip (prefill + KV save), and D's first streamed chunk after P returned (KV load + first
decode step). It runs on 127.0.0.1 in a background thread of the calling process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web

PREFILL_KV_PARAMS = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                     "remote_block_ids": None, "remote_host": None, "remote_port": None}


class PDProxy:
    """`with PDProxy(prefill_url, decode_url) as url:` serves /v1/completions and
    /v1/chat/completions at `url`; `timings` holds one dict per proxied request."""

    def __init__(self, prefill_url: str, decode_url: str, host: str = "127.0.0.1", timeout_s: float = 600.0):
        self.prefill_url = prefill_url.rstrip("/")
        self.decode_url = decode_url.rstrip("/")
        self.host = host
        self.timeout_s = timeout_s
        self.timings: list[dict[str, Any]] = []
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ request path

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.json()
        row: dict[str, Any] = {"path": path, "error": None}
        t0 = time.perf_counter()
        prefill = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        prefill.update(max_tokens=1, stream=False, kv_transfer_params=dict(PREFILL_KV_PARAMS))
        if "max_completion_tokens" in prefill:
            prefill["max_completion_tokens"] = 1
        async with self._session.post(self.prefill_url + path, json=prefill) as resp:
            p_json = await resp.json(content_type=None)
            if resp.status != 200:
                row.update(error=f"prefill server answered {resp.status}: {json.dumps(p_json)[:200]}")
                self.timings.append(row)
                return web.json_response(p_json, status=resp.status)
        t1 = time.perf_counter()
        row["prefill_ms"] = (t1 - t0) * 1000
        decode = dict(body)
        if p_json.get("kv_transfer_params"):
            decode["kv_transfer_params"] = p_json["kv_transfer_params"]
        row["kv_transfer_params_returned"] = bool(p_json.get("kv_transfer_params"))
        async with self._session.post(self.decode_url + path, json=decode) as resp:
            if not body.get("stream"):
                d_json = await resp.json(content_type=None)
                row["decode_first_token_ms"] = None
                row["total_ms"] = (time.perf_counter() - t0) * 1000
                self.timings.append(row)
                return web.json_response(d_json, status=resp.status)
            out = web.StreamResponse(status=resp.status, headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            first = None
            text: list[str] = []
            async for line in resp.content:
                if first is None and line.startswith(b"data: {"):
                    first = time.perf_counter()
                if line.startswith(b"data: {"):
                    text.append(_chunk_text(line))
                await out.write(line)
            await out.write_eof()
        row["decode_first_token_ms"] = (first - t1) * 1000 if first else None
        row["total_ms"] = (time.perf_counter() - t0) * 1000
        row["text"] = "".join(text)
        self.timings.append(row)
        return out

    async def _models(self, request: web.Request) -> web.Response:
        async with self._session.get(self.decode_url + "/v1/models") as resp:
            return web.json_response(await resp.json(content_type=None), status=resp.status)

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        app = web.Application()
        app.router.add_post("/v1/completions", self._proxy)
        app.router.add_post("/v1/chat/completions", self._proxy)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port the OS chose
        self.url = f"http://{self.host}:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def start(self) -> str:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="pd-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the disaggregated-prefill proxy did not start within 30 s")
        return self.url  # type: ignore[return-value]

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)  # type: ignore[union-attr]
        self._loop.close()
        self._loop = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _chunk_text(line: bytes) -> str:
    try:
        choice = (json.loads(line[len(b"data: "):]).get("choices") or [{}])[0]
    except (ValueError, IndexError):
        return ""
    return choice.get("text") or (choice.get("delta") or {}).get("content") or ""
