"""The `sections.smoke` block of the params file (read by the smoke section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...schema import Strict


class SmokeConfig(Strict):
    enabled: bool = True
    prompts: list[str] | None = Field(None, description="prompts to run; default: the shipped varied set")
    chat_prompt: str = "Introduce yourself in one sentence."
    max_tokens: int = Field(32, gt=0)
    dummy_gate: bool = Field(True, description="load with load_format=dummy first (vllm engine only)")
    serve: bool = Field(True, description="also run the prompts through the OpenAI API of a served model")
    target_via: Literal["auto", "offline"] = Field(
        "auto", description="auto: when the run has a shared server (the target's configuration, served), it is "
                            "the load under test and the prompts go through its API, with no second start of the "
                            "same configuration; offline: an offline engine is loaded here, and the prompts are "
                            "compared with the served ones")
    determinism: bool = True
