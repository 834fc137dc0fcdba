"""The `sections.smoke` block of the params file (read by the smoke section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from pydantic import Field

from ...schema import Strict


class SmokeConfig(Strict):
    enabled: bool = True
    prompts: list[str] | None = Field(None, description="prompts to run; default: the shipped varied set")
    chat_prompt: str = "Introduce yourself in one sentence."
    max_tokens: int = Field(32, gt=0)
    dummy_gate: bool = Field(True, description="load with load_format=dummy first (vllm engine only)")
    serve: bool = Field(True, description="also run the prompts through the OpenAI API of a served model")
    determinism: bool = True
