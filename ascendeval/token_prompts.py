"""Seeded random token-id prompts of exact lengths, the one maker every section uses.

Like vLLM's random dataset: ids drawn uniformly from the vocabulary, special tokens excluded, no
tokenizer round trip (so a prompt is exactly the length asked for). The draw is bounded by the
model's own vocabulary, not vLLM's fixed 10000, so small vocabularies work too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TokenPrompts:
    def __init__(self, tokenizer: Any, seed: int):
        specials = set(getattr(tokenizer, "all_special_ids", []) or [])
        vocab = int(getattr(tokenizer, "vocab_size", None) or len(tokenizer))
        self.ids = np.array([i for i in range(vocab) if i not in specials], dtype=np.int64)
        self.rng = np.random.default_rng(seed)

    def make(self, n_tokens: int) -> list[int]:
        """One prompt of exactly `n_tokens` ids."""
        return [int(x) for x in self.rng.choice(self.ids, size=n_tokens)]

    def many(self, n: int, n_tokens: int) -> list[list[int]]:
        """`n` prompts of exactly `n_tokens` ids each."""
        if n <= 0:
            raise ValueError(f"number of prompts must be >= 1, got {n}")
        return [self.make(n_tokens) for _ in range(n)]

    def text(self, tokenizer: Any, n_tokens: int, max_retry: int = 10) -> tuple[str, int]:
        """A text prompt that the served model's tokenizer reads as `n_tokens` tokens, and the
        mismatch left when the retries ran out (0: exact). vLLM's random dataset does the same
        (benchmarks/datasets: gen_prompt_decode_to_target_len): random ids do not survive a
        decode/encode round trip, so the text is decoded, re-encoded, then padded with random ids
        or cut to the target, until the re-encoded length is the target."""
        ids = self.make(n_tokens)
        for attempt in range(max_retry + 1):
            text = tokenizer.decode(ids)
            ids = list(tokenizer.encode(text, add_special_tokens=False))
            if len(ids) == n_tokens or attempt == max_retry:
                break
            if len(ids) < n_tokens:
                ids += [int(x) for x in self.rng.choice(self.ids, size=n_tokens - len(ids))]
            else:
                ids = ids[:n_tokens]
        return text, len(ids) - n_tokens
