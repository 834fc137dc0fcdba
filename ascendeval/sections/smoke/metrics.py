"""The `metrics` of `records/smoke.json`.

Filled by the smoke steps (`sections/smoke/steps.py`, one `run.add` per block): `resolve_model`
-> model, `dummy_gate` -> dummy_gate, `load` -> load, `run_prompts` -> prompts, `run_chat` -> chat,
`determinism` -> determinism, `served` -> served; `engine_starts` and `steps` come from
context.SectionRun. A step that was skipped or failed writes no block, so every block is optional.
"""

from __future__ import annotations

from ascendeval.schema import (
    EngineInfo,
    EngineStart,
    MetricsModel,
    ModelFacts,
    SectionMetrics,
)


class DummyGate(MetricsModel):
    """vLLM with random weights (load_format=dummy): the engine and its kernels work."""

    load_s: float
    rss_bytes: int  # process tree RSS after generating
    output_tokens: list[int]  # per gate prompt; 8 each or the step fails


class Load(MetricsModel):
    """The real weights loaded and generating."""

    # the engine's own load time; None where it reports none (openai: the server loaded the model)
    load_s: float | None
    # this process tree's RSS; None for a served target (the model lives in the server's processes)
    rss_bytes: int | None
    rss_delta_bytes: int | None  # RSS growth over the load, floored at 0
    engine_info: EngineInfo
    # the run's shared server when it is the load under test (load_s: its start, rss_bytes: its
    # process tree); None: an engine loaded by this section
    served_by: str | None = None


class Prompts(MetricsModel):
    """The prompt set, one prompt at a time (greedy)."""

    count: int
    mean_latency_s: float
    max_latency_s: float
    min_latency_s: float
    empty_outputs: int
    expected_count: int  # prompts with a known answer (steps.EXPECTED)
    as_expected_count: int  # of those, outputs that contain it


class Chat(MetricsModel):
    """One conversation through the chat template."""

    output_tokens: int | None  # None: a served engine that reported no usage
    latency_s: float
    output: str


class Determinism(MetricsModel):
    """The prompt set twice, greedy: identical token ids expected."""

    prompts: int
    identical_prompts: int
    identical_rate: float


class Served(MetricsModel):
    """The same prompts through the served model's OpenAI API."""

    requests: int
    empty_outputs: int
    mean_latency_s: float
    mean_ttft_ms: float | None  # None: no request reported a first token time
    same_as_offline_rate: float | None  # None: no token ids to compare with the offline run


class SmokeMetrics(SectionMetrics):
    model: ModelFacts | None = None
    engine_starts: list[EngineStart] | None = None
    dummy_gate: DummyGate | None = None
    load: Load | None = None
    prompts: Prompts | None = None
    chat: Chat | None = None
    determinism: Determinism | None = None
    served: Served | None = None
