"""The `sections.features` block of the params file (read by the features section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ...schema import Strict

SPEC_METHODS = ("ngram", "draft_model", "eagle", "eagle3")


class FeaturesConfig(Strict):
    """Advanced serving features, each an A/B on the real engine. Lengths are in tokens; every
    length list is capped by model.max_model_len (and the KV cache) at run time, and what was
    dropped is recorded. Defaults run on CPU with the built-in tiny model in a few minutes."""

    enabled: bool = True
    seed: int = Field(0, description="seed of the random-token prompts")
    # -- prefix caching
    prefix_caching: bool = Field(True, description="run the prefix-caching A/B")
    prefix_prompt_len: int = Field(512, gt=1, description="tokens per prompt (shared prefix + own suffix)")
    prefix_shared_ratio: float = Field(0.75, gt=0, lt=1, description="fraction of each prompt that is the shared prefix")
    prefix_num_prompts: int = Field(8, gt=0, description="prompts per arm (shared-prefix arm and distinct-prefix arm)")
    prefix_output_len: int = Field(8, gt=0)
    prefix_off_engine: bool = Field(
        False, description="also run the shared-prefix arm on a second engine started with prefix caching off "
                           "(one more engine start; the distinct-prefix arm already measures the no-hit cost)")
    # -- speculative decoding
    speculative: bool = Field(True, description="run the speculative-decoding A/B (offline)")
    spec_methods: list[Literal["ngram", "draft_model", "eagle", "eagle3"]] = Field(
        default_factory=lambda: ["ngram"], description="ngram always works; draft_model / eagle / eagle3 need spec_model")
    spec_model: str | None = Field(None, description="draft model or EAGLE head directory (local path)")
    num_speculative_tokens: int = Field(3, gt=0)
    ngram_prompt_lookup_min: int = Field(2, gt=0)
    ngram_prompt_lookup_max: int = Field(4, gt=0)
    spec_num_prompts: int = Field(4, gt=0, description="copy-friendly prompts from the shipped corpus")
    spec_output_len: int = Field(48, gt=1)
    spec_served: bool = Field(True, description="also A/B through a served model (two servers: without / with ngram)")
    spec_served_num_prompts: int = Field(4, gt=0)
    # -- prefill / decode split
    pd_split: bool = Field(True, description="per-request prefill vs decode time across length mixes")
    pd_mixes: list[tuple[int, int]] = Field(
        default_factory=lambda: [(128, 32), (512, 32), (128, 128)], description="[input_len, output_len] pairs")
    pd_num_prompts: int = Field(2, gt=0, description="requests per mix, sent one at a time")
    disaggregated: bool = Field(False, description="real disaggregated prefill: a prefill server and a decode server "
                                                   "behind a proxy, KV handed over by a connector (two more server "
                                                   "starts, so off in the default demo)")
    kv_connector: str = Field("ExampleConnector", description="vLLM KV connector name, checked against the ones vLLM "
                              "and its platform plugin register: ExampleConnector (KV in files, runs on CPU); "
                              "MooncakeConnectorV1 / MooncakeLayerwiseConnector on Ascend (vllm-ascend); "
                              "NixlConnector on GPUs")
    kv_connector_extra_config: dict[str, Any] = Field(default_factory=dict, description="passed verbatim; "
                                                      "shared_storage_path defaults to <run_dir>/kv_store")
    disagg_input_len: int = Field(512, gt=1, description="must exceed the KV block size for anything to transfer")
    disagg_output_len: int = Field(16, gt=1)
    disagg_num_prompts: int = Field(2, gt=0)
    # -- chunked prefill and long context
    long_context: bool = Field(True, description="TTFT and decode speed vs input length")
    long_context_lengths: list[int] = Field(
        default_factory=lambda: [256, 1024, 4096, 16384, 32768, 65536, 131072],
        description="input lengths; those above max_model_len - output_len (or the KV cache) are dropped and "
                    "the largest length that fits is added")
    long_context_output_len: int = Field(16, gt=1)
    long_context_repeats: int = Field(3, gt=0, description="requests per length (fresh tokens); the median-TTFT one "
                                                           "is reported, min/max beside it")
    chunk_tokens: int | None = Field(
        512, gt=0, description="max_num_batched_tokens of the section's main engine: the prefill chunk size. Prompts "
                               "longer than it are prefilled in chunks, so the on/off A/B compares two schedules "
                               "(vLLM's CPU default, 4096, exceeds every length the tiny demo can run). null = the "
                               "params' target / engine default")
    chunked_prefill_off: bool = Field(True, description="repeat the long-context sweep with chunked prefill off "
                                                        "(one more engine start)")
    # -- capacity
    capacity: bool = Field(True, description="max concurrent sequences at given lengths, and the largest batch run")
    capacity_lengths: list[int] = Field(default_factory=lambda: [256, 1024], description="tokens per sequence")
    capacity_output_len: int = Field(8, gt=0)
    capacity_max_batch: int = Field(8, gt=0, description="cap on the batch actually run (the KV figure is not capped)")
    # -- operator compatibility scan
    opscan: bool = Field(True, description="scan the model's code for ops and check the engine's registries")
    opscan_model_path: str | None = Field(None, description="model directory to scan; default: the params' model")
    opscan_trace: bool = Field(True, description="trace the aten ops of one forward on the meta device (no memory)")

    @field_validator("pd_mixes")
    @classmethod
    def _positive_mixes(cls, v: list) -> list:
        if any(a < 1 or b < 1 for a, b in v):
            raise ValueError("pd_mixes entries are [input_len, output_len] with both >= 1")
        return v

    @field_validator("long_context_lengths", "capacity_lengths")
    @classmethod
    def _positive_lengths(cls, v: list) -> list:
        if not v or any(x < 2 for x in v):
            raise ValueError("give at least one length, each >= 2 tokens")
        return sorted(set(v))

    @model_validator(mode="after")
    def _spec_model(self) -> "FeaturesConfig":
        needs = [m for m in self.spec_methods if m != "ngram"]
        if needs and not self.spec_model:
            raise ValueError(f"spec_methods {needs} need spec_model (a local draft model or EAGLE head directory)")
        if self.ngram_prompt_lookup_min > self.ngram_prompt_lookup_max:
            raise ValueError("ngram_prompt_lookup_min must be <= ngram_prompt_lookup_max")
        return self
