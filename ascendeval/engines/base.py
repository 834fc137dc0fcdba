"""The one interface every engine implements, and the result types it returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sampling:
    """What to generate. Greedy (temperature 0) by default: evaluation wants determinism."""

    max_tokens: int = 32
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = 0
    ignore_eos: bool = False
    stop: list[str] | None = None
    logprobs: int | None = None  # top-k logprobs per generated token
    prompt_logprobs: int | None = None  # top-k logprobs per prompt token (vllm / hf)
    # False: no text (vLLM then also skips decoding every returned logprob's token, most of the
    # cost of top-N logprobs on a CPU host); for comparisons that read ids and logprobs only
    detokenize: bool = True


@dataclass
class Timing:
    """Wall-clock seconds measured around one request (batch calls share start and end)."""

    start_s: float
    end_s: float
    ttft_s: float | None = None  # time to the first generated token, when the engine exposes it

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Generation:
    """One prompt's result."""

    prompt: str | None
    prompt_token_ids: list[int]
    text: str
    token_ids: list[int]
    finish_reason: str | None
    timing: Timing
    # per generated token: {token_id: logprob} for the top-k (plus the sampled token)
    logprobs: list[dict[int, float]] | None = None
    # per prompt token (first is None): {token_id: logprob}
    prompt_logprobs: list[dict[int, float] | None] | None = None
    usage: dict[str, int] | None = None  # as reported by the engine/server, when it reports
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_output_tokens(self) -> int:
        """The generated tokens: their ids where the engine returned them, else the count the
        server's `usage` reports (a server that is not vLLM returns no ids), else 0."""
        if self.token_ids:
            return len(self.token_ids)
        return int((self.usage or {}).get("completion_tokens") or 0)


class Engine(abc.ABC):
    """generate() for completion prompts, chat() for chat-template conversations."""

    name: str = "base"

    @abc.abstractmethod
    def generate(self, prompts: list[str] | list[list[int]], sampling: Sampling) -> list[Generation]:
        """Generate for a batch of prompts (text or token ids); results in prompt order."""

    @abc.abstractmethod
    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling) -> list[Generation]:
        """Generate for a batch of conversations with the model's chat template."""

    def tokenizer(self) -> Any:
        """A tokenizer with encode/decode (transformers-compatible) or None."""
        return None

    def info(self) -> dict[str, Any]:
        """Load time, memory and capacity figures the engine knows about."""
        return {}

    def close(self) -> None:
        """Release the engine (device memory, worker processes)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
