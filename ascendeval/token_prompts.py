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
