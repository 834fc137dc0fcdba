"""A fault for the deployment-matrix tests: a vLLM (v1) logits processor that bans the top token
at one generated position (`FLIP_AT`) of every request, so the sampled token there is the
second choice. vLLM returns raw logprobs (before processors), so the arm's logprobs stay honest
and only its greedy path changes: a decode-path fault the teacher-forced prefill comparison
cannot see, with a known first divergence."""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import (
    BatchUpdate,
    LogitsProcessor,
    MoveDirectionality,
)

FLIP_AT = 3


class FlipTopAt(LogitsProcessor):
    def __init__(self, vllm_config, device, is_pin_memory):
        self.outputs: dict[int, list[int]] = {}  # batch row -> the request's live output ids

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.outputs.pop(index, None)
        for index, _params, _prompt, output_ids in batch_update.added:
            self.outputs[index] = output_ids
        for a, b, direction in batch_update.moved:
            if direction == MoveDirectionality.SWAP:
                self.outputs[a], self.outputs[b] = self.outputs.get(b), self.outputs.get(a)
            else:
                self.outputs[b] = self.outputs.pop(a, None)
        self.outputs = {k: v for k, v in self.outputs.items() if v is not None}

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for row, out in self.outputs.items():
            if row < logits.shape[0] and len(out) == FLIP_AT:
                logits[row, int(logits[row].argmax())] = float("-inf")
        return logits
