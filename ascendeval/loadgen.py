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
"""

from __future__ import annotations

import asyncio
import gc
import concurrent.futures
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import aiohttp
import numpy as np

from .metrics import RequestResult, serving_metrics

Api = Literal["completions", "chat"]


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


async def stream_request(
    session: aiohttp.ClientSession, ep: Endpoint, index: int, prompt: str | list[int], max_tokens: int,
    prompt_tokens: int | None = None,
) -> RequestResult:
    """Send one streaming request and time it. Never raises: failures are returned as rows."""
    res = RequestResult(index=index, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
    counts: list[int | None] = []
    finished = False
    body = ep.payload(prompt, max_tokens)
    st = time.perf_counter()
    res.start_s = st
    last = st
    try:
        async with session.post(ep.url, json=body, headers=ep.headers()) as resp:
            res.http_status = resp.status
            if resp.status != 200:
                text = (await resp.text())[:300].replace("\n", " ")
                res.error = f"HTTP {resp.status}: {text}"
                return res
            buf = b""
            async for data in resp.content.iter_any():
                now = time.perf_counter()  # arrival time of these bytes
                buf += data
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
                        finished = True
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
                            finished = True
                        carries, text, ntok = _chunk_output(choice, ep.api)
                        if not carries:
                            continue  # role chunk, empty final chunk
                        if res.ttft_s is None:
                            res.ttft_s = now - st
                        else:
                            res.itl_s.append(now - last)
                        last = now
                        res.num_chunks += 1
                        res.output_text_chars += len(text)
                        res.output_text += text
                        ids = choice.get("token_ids")
                        if isinstance(ids, list):
                            if res.output_token_ids is None:
                                res.output_token_ids = []
                            res.output_token_ids.extend(int(t) for t in ids)
                        counts.append(ntok)
    except (aiohttp.ClientError, asyncio.TimeoutError, EndpointError, json.JSONDecodeError, OSError) as exc:
        res.error = f"{type(exc).__name__}: {exc}".strip()
        return res
    except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a malformed chunk: this request's failure
        res.error = f"malformed stream chunk: {type(exc).__name__}: {exc}".strip()
        return res
    if res.ttft_s is None:
        res.error = "stream ended without any generated output"
        return res
    if not finished:
        res.error = "stream ended before finish_reason / [DONE] (connection closed mid-response)"
        return res
    res.e2el_s = last - st
    res.success = True
    if counts and all(c is not None for c in counts):
        res.chunk_tokens = [int(c) for c in counts]  # type: ignore[arg-type]
    elif res.output_tokens is not None and res.output_tokens == res.num_chunks:
        res.chunk_tokens = [1] * res.num_chunks  # one token per chunk: exact without token ids
    return res


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
    """One measured load: all rows (warm-up rows flagged) and the timed duration."""

    spec: LoadSpec
    results: list[RequestResult]
    warmup: list[RequestResult]
    duration_s: float
    started_at: float  # time.time() at the start, for logs

    def metrics(self, slo_ms: dict[str, float] | None = None) -> dict[str, Any]:
        m = serving_metrics(self.results, self.duration_s, slo_ms)
        m["request_rate_req_per_s"] = None if math.isinf(self.spec.request_rate) else self.spec.request_rate
        m["request_rate_label"] = "inf" if math.isinf(self.spec.request_rate) else f"{self.spec.request_rate:g}"
        m["burstiness"] = self.spec.burstiness
        m["max_concurrency"] = self.spec.max_concurrency
        m["warmup_count"] = len(self.warmup)
        return m

    def rows(self, **tags: Any) -> list[dict[str, Any]]:
        label = self.spec.label()
        return [{**r.row(), "load": label, **tags} for r in [*self.warmup, *self.results]]

    @classmethod
    def pooled(cls, runs: Sequence["LoadRun"]) -> "LoadRun":
        """Repeats of one load spec as one run: every request, the durations summed (so a
        throughput is requests over the time spent measuring, and percentiles are over all rows)."""
        if not runs:
            raise ValueError("no runs to pool")
        return cls(spec=runs[0].spec, results=[r for lr in runs for r in lr.results],
                   warmup=[r for lr in runs for r in lr.warmup], duration_s=sum(lr.duration_s for lr in runs),
                   started_at=runs[0].started_at)


def _connector(max_concurrency: int | None) -> aiohttp.TCPConnector:
    # One pooled connection per in-flight request; keep-alive so connection set-up is not
    # charged to TTFT after the first request on a connection (as vLLM's client does).
    return aiohttp.TCPConnector(limit=max_concurrency or 0, limit_per_host=0, ttl_dns_cache=300,
                                keepalive_timeout=60, enable_cleanup_closed=True)


async def _run_load_async(
    ep: Endpoint, prompts: Sequence[str | list[int]], max_tokens: Sequence[int], prompt_tokens: Sequence[int | None],
    spec: LoadSpec, warmup_requests: int, progress: bool, warmup_prompts: list[str | list[int]] | None = None,
    warmup_as_load: bool = False,
) -> LoadRun:
    timeout = aiohttp.ClientTimeout(total=ep.timeout_s, sock_connect=30)
    async with aiohttp.ClientSession(connector=_connector(spec.max_concurrency), timeout=timeout,
                                     read_bufsize=1 << 20) as session:
        sem = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None

        async def send(i: int, prompt: str | list[int], n_out: int, n_in: int | None, at: float, bar: Any) -> RequestResult:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if sem is None:
                r = await stream_request(session, ep, i, prompt, n_out, n_in)
            else:
                async with sem:
                    r = await stream_request(session, ep, i, prompt, n_out, n_in)
            if bar is not None:
                bar.update(1)
            return r

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
                if warmup_prompts:
                    r = await stream_request(session, ep, -1 - i, warmup_prompts[i % len(warmup_prompts)], max_tokens[j])
                else:
                    r = await stream_request(session, ep, -1 - i, prompts[j], max_tokens[j], prompt_tokens[j])
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
        started_at = time.time()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(send(i, prompts[i], max_tokens[i], prompt_tokens[i], t0 + offsets[i], bar)
                                         for i in range(len(prompts))))
        duration = time.perf_counter() - t0
        if bar is not None:
            bar.close()
    return LoadRun(spec=spec, results=list(results), warmup=warm, duration_s=duration, started_at=started_at)


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
) -> LoadRun:
    """Send `prompts` with the arrival process of `spec`; return every row. Raises EndpointError
    only when nothing could be measured (all warm-up requests failed).

    Warm-up requests send `warmup_prompts` when given, else the first prompts again; against a
    server with prefix caching on, the latter makes the timed requests for those prompts cache hits.
    `warmup_as_load`: the warm-up prompts go out with the timed run's arrival process and
    concurrency (all of them, untimed) instead of `warmup_requests` one at a time."""
    if not prompts:
        raise ValueError("no prompts to send: num_prompts must be >= 1")
    spec = spec or LoadSpec()
    if spec.max_concurrency is not None and spec.max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1 or None, got {spec.max_concurrency}")
    mt = [int(max_tokens)] * len(prompts) if isinstance(max_tokens, int) else [int(x) for x in max_tokens]
    if len(mt) != len(prompts):
        raise ValueError(f"{len(mt)} max_tokens values for {len(prompts)} prompts")
    if any(x < 1 for x in mt):
        raise ValueError("max_tokens must be >= 1 for every request")
    pt = list(prompt_tokens) if prompt_tokens is not None else [None] * len(prompts)
    warm = list(warmup_prompts) if warmup_prompts else None
    if warmup_as_load and not warm:
        raise ValueError("warmup_as_load needs warmup_prompts (fresh prompts: a replay of the timed ones "
                         "would make them prefix-cache hits)")
    # As `vllm bench serve` does: collect now and freeze what exists, so a garbage-collection pause
    # (an engine closed just before leaves a lot of garbage in this process) cannot stall the
    # client while it times the streams: it would read as server latency.
    gc.collect()
    gc.freeze()
    try:
        return _in_thread(_run_load_async, ep, list(prompts), mt, pt, spec, warmup_requests, progress, warm,
                          warmup_as_load)
    finally:
        gc.unfreeze()


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
