"""Client engine for any OpenAI-compatible server (vLLM, vllm-ascend, SGLang, MindIE...).

Requests stream so TTFT is measured at the client, as a user would see it. Token counts come
from the server's `usage` (stream_options.include_usage), never from re-tokenised text; when a
server omits usage the Generation says so (usage=None). With a vLLM server, token ids are asked
for (`return_token_ids`, `return_tokens_as_token_ids`), other servers ignore those fields.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from .base import Engine, Generation, Sampling, Timing

# vLLM's server writes a prompt logprob of -inf as -9999.0 (JSON has no infinity:
# clamp_prompt_logprobs in vllm/entrypoints); read back, it is the -inf it stands for
VLLM_CLAMPED_NEG_INF = -9999.0


OPENAI_MAX_STOPS = 4  # stop strings per request the OpenAI API (and vLLM by default) accept


class StopListRefused(RuntimeError):
    """The server refused the request's stop list as too long (see OpenAIEngine._stream)."""


class PromptLogprobsUnsupported(RuntimeError):
    """The server gives no prompt logprobs: they are vLLM's extension of the completions API."""


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 600.0, vllm_extensions: bool = True, tokenizer_path: str | None = None,
                 concurrency: int = 1):
        self.base_url = base_url.rstrip("/")
        # requests in flight at once for a list of prompts: 1 keeps each request's latency its own
        # (smoke); a measurement of outputs only (quality) sends them together, so the server
        # batches them as an offline engine would
        self.concurrency = max(1, int(concurrency))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self.api_key = api_key
        self.vllm_extensions = vllm_extensions
        self.model = model or self.served_models()[0]
        self.tokenizer_path = tokenizer_path  # the served model's local files, when the run has them
        self._tokenizer: Any = None
        self.owned_server: Any = None  # a server started for this engine alone: stopped by close()

    def served_models(self) -> list[str]:
        r = self.client.get("/v1/models")
        r.raise_for_status()
        return [m["id"] for m in r.json()["data"]]

    def _body(self, s: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": s.max_tokens, "temperature": s.temperature,
                                "top_p": s.top_p, "stream": True, "stream_options": {"include_usage": True}}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = s.stop
        if s.top_k:
            body["top_k"] = s.top_k
        if self.vllm_extensions:
            body["ignore_eos"] = s.ignore_eos
            body["return_token_ids"] = True
        elif s.ignore_eos:
            raise ValueError("ignore_eos needs a vLLM server (vllm_extensions=True)")
        return body

    def _stream(self, path: str, body: dict[str, Any], chat: bool) -> Generation:
        """One streamed request. A server that takes at most OPENAI_MAX_STOPS stop strings (the
        OpenAI API's limit, vLLM's default VLLM_MAX_STOP_STRINGS) answers HTTP 400 to more (a
        base model's HumanEval stops are 7): the request is sent again with the first ones and
        the rest are applied here, to the text and its token ids, as the server would have."""
        stops = body.get("stop")
        try:
            return self._stream_once(path, body, chat)
        except StopListRefused:
            if not isinstance(stops, list) or len(stops) <= OPENAI_MAX_STOPS:
                raise
        g = self._stream_once(path, {**body, "stop": stops[:OPENAI_MAX_STOPS]}, chat)
        return self._cut_at_stops(g, stops[OPENAI_MAX_STOPS:])

    def _cut_at_stops(self, g: Generation, stops: list[str]) -> Generation:
        cuts = [i for i in (g.text.find(st) for st in stops if st) if i >= 0]
        if not cuts:
            return g
        g.text, g.finish_reason = g.text[: min(cuts)], "stop"
        tok = self.tokenizer()
        if tok is not None and g.token_ids:
            # the shortest prefix of tokens whose text holds a stop string: the server stops there
            for k in range(1, len(g.token_ids) + 1):
                if any(st in tok.decode(g.token_ids[:k]) for st in stops if st):
                    g.token_ids = g.token_ids[:k]
                    break
        g.extra["stops_applied_by_client"] = stops
        return g

    def _stream_once(self, path: str, body: dict[str, Any], chat: bool) -> Generation:
        text_parts: list[str] = []
        token_ids: list[int] = []
        prompt_ids: list[int] = []
        logprobs: list[dict[int, float]] = []
        chunk_times: list[float] = []
        usage = None
        finish = None
        t0 = time.perf_counter()
        ttft = None
        with self.client.stream("POST", path, json=body) as resp:
            if resp.status_code != 200:
                resp.read()
                if resp.status_code == 400 and "stop" in resp.text and isinstance(body.get("stop"), list) \
                        and len(body["stop"]) > OPENAI_MAX_STOPS:
                    raise StopListRefused(resp.text[:300])
                raise RuntimeError(f"{path} returned HTTP {resp.status_code}: {resp.text[:300]}")
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                msg = json.loads(data)
                if msg.get("usage"):
                    usage = msg["usage"]
                if msg.get("prompt_token_ids"):
                    prompt_ids = list(msg["prompt_token_ids"])
                for ch in msg.get("choices", []):
                    piece = (ch.get("delta") or {}).get("content") if chat else ch.get("text")
                    now = time.perf_counter()
                    if piece:
                        if ttft is None:
                            ttft = now - t0  # first non-empty chunk, as vLLM's bench client does
                        chunk_times.append(now - t0)
                        text_parts.append(piece)
                    if ch.get("token_ids"):
                        token_ids.extend(int(t) for t in ch["token_ids"])
                    if ch.get("prompt_token_ids"):
                        prompt_ids = list(ch["prompt_token_ids"])
                    lp = ch.get("logprobs")
                    if lp:
                        logprobs.extend(_parse_logprobs(lp, chat))
                    if ch.get("finish_reason"):
                        finish = ch["finish_reason"]
        t1 = time.perf_counter()
        return Generation(
            prompt=None, prompt_token_ids=prompt_ids, text="".join(text_parts), token_ids=token_ids,
            finish_reason=finish, timing=Timing(start_s=t0, end_s=t1, ttft_s=ttft),
            logprobs=logprobs or None, usage=usage,
            extra={"chunk_times_s": chunk_times, "usage_missing": usage is None,
                   "num_cached_tokens": _cached_tokens(usage)},
        )

    def tokenizer(self) -> Any:
        """The served model's tokenizer, from its local files (None when the run has none)."""
        if self._tokenizer is None and self.tokenizer_path:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path)
        return self._tokenizer

    def _each(self, fn: Any, items: list[Any]) -> list[Generation]:
        """fn over items, `concurrency` requests in flight (httpx.Client is thread-safe), in order."""
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts: list[str] | list[list[int]], sampling: Sampling) -> list[Generation]:
        if sampling.prompt_logprobs is not None:
            return self._each(lambda p: self._scored(p, sampling), list(prompts))

        def one(p: str | list[int]) -> Generation:
            body = self._body(sampling) | {"prompt": p}
            if sampling.logprobs is not None:
                body["logprobs"] = sampling.logprobs
                if self.vllm_extensions:
                    body["return_tokens_as_token_ids"] = True
            g = self._stream("/v1/completions", body, chat=False)
            g.prompt = p if isinstance(p, str) else None
            return g

        return self._each(one, list(prompts))

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        def one(conv: list[dict[str, str]]) -> Generation:
            body = self._body(sampling) | {"messages": conv}
            if sampling.logprobs is not None:
                body.update(logprobs=True, top_logprobs=sampling.logprobs)
                if self.vllm_extensions:
                    body["return_tokens_as_token_ids"] = True
            return self._stream("/v1/chat/completions", body, chat=True)

        return self._each(one, list(conversations))

    def _scored(self, prompt: str | list[int], s: Sampling) -> Generation:
        """One prompt read with its prompt logprobs (vLLM's `prompt_logprobs` extension: the
        server's top-N per prompt position plus the prompt's own token). vLLM refuses them on a
        streamed request, so this one is not streamed (no TTFT)."""
        if not self.vllm_extensions:
            raise PromptLogprobsUnsupported(
                f"{self.base_url} is not declared a vLLM server (server.kind): prompt logprobs are vLLM's extension "
                "of the completions API")
        body = self._body(s) | {"prompt": prompt, "stream": False, "prompt_logprobs": s.prompt_logprobs}
        body.pop("stream_options")
        t0 = time.perf_counter()
        resp = self.client.post("/v1/completions", json=body)
        t1 = time.perf_counter()
        if resp.status_code != 200:
            raise RuntimeError(f"/v1/completions with prompt_logprobs returned HTTP {resp.status_code}: "
                               f"{resp.text[:300]}")
        data = resp.json()
        ch = data["choices"][0]
        rows = ch.get("prompt_logprobs")
        if rows is None:
            raise PromptLogprobsUnsupported(f"{self.base_url} answered without prompt_logprobs")
        return Generation(
            prompt=prompt if isinstance(prompt, str) else None,
            prompt_token_ids=list(ch.get("prompt_token_ids") or []), text=ch.get("text") or "",
            token_ids=list(ch.get("token_ids") or []), finish_reason=ch.get("finish_reason"),
            timing=Timing(start_s=t0, end_s=t1), usage=data.get("usage"),
            extra={"num_cached_tokens": _cached_tokens(data.get("usage"))},
            prompt_logprobs=[None if row is None else {int(tid): _logprob(v) for tid, v in row.items()}
                             for row in rows],
        )

    def reset_prefix_cache(self) -> None:
        """Empty the server's prefix cache (vLLM's dev route, SGLang's /flush_cache); raises when
        it offers none or refuses."""
        from .. import loadgen

        done, note = loadgen.reset_prefix_cache(self.base_url, self.api_key)
        if not done:
            raise RuntimeError(f"the server's prefix cache could not be reset: {note}")

    def block_size(self) -> int | None:
        """The KV-cache block size a vLLM server states on /metrics (`vllm:cache_config_info`
        carries its cache settings as labels); None when it does not."""
        import re

        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        try:
            r = self.client.get(f"{root}/metrics")
        except httpx.HTTPError:
            return None
        m = re.search(r'cache_config_info\{[^}]*block_size="(\d+)"', r.text) if r.status_code == 200 else None
        return int(m.group(1)) if m else None

    def info(self) -> dict[str, Any]:
        return {"engine": "openai", "base_url": self.base_url, "model": self.model, "concurrency": self.concurrency}

    def close(self) -> None:
        self.client.close()
        if self.owned_server is not None:
            self.owned_server.close()
            self.owned_server = None


def _cached_tokens(usage: dict[str, Any] | None) -> int | None:
    """Prompt tokens the server took from its prefix cache (vLLM reports them with
    --enable-prompt-tokens-details); None when it does not say."""
    details = (usage or {}).get("prompt_tokens_details") or {}
    v = details.get("cached_tokens")
    return int(v) if v is not None else None


def _logprob(entry: dict[str, Any]) -> float:
    value = float(entry["logprob"])
    return float("-inf") if value == VLLM_CLAMPED_NEG_INF else value


def _token_id(token: str) -> int | None:
    # vLLM's return_tokens_as_token_ids renders tokens as "token_id:123"
    return int(token.split(":", 1)[1]) if token.startswith("token_id:") else None


def _parse_logprobs(lp: dict[str, Any], chat: bool) -> list[dict[int, float]]:
    rows: list[dict[int, float]] = []
    if chat:
        for item in lp.get("content") or []:
            row = {}
            for alt in item.get("top_logprobs") or []:
                tid = _token_id(alt["token"])
                if tid is not None:
                    row[tid] = float(alt["logprob"])
            rows.append(row)
        return rows
    for top in lp.get("top_logprobs") or []:
        rows.append({tid: float(v) for tok, v in (top or {}).items() if (tid := _token_id(tok)) is not None})
    return rows
