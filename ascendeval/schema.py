"""Pydantic base classes shared by the params schema (config.py, each section's config module) and
the record metrics models (each section's metrics module). A leaf module: it imports nothing of
ascendeval, so a section package can declare its models without importing the run config.
Also here: the blocks several sections' records share (steps, engine starts, engine info, model
facts), `metrics_problems` and the records' JSON Schema (`record_json_schema`)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema


class Strict(BaseModel):
    """A params block: unknown keys are an error, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# =========================================================================== record metrics
# Each section's `sections/<name>/metrics.py` declares the `metrics` object of its record
# (`records/<section>.json`) as one `<Name>Metrics` model built from `MetricsModel` blocks. The
# models say which keys exist and what type each holds; what values are possible (a cosine in
# [-1, 1], a duration >= 0) stays in the metric catalog (data/metrics.yaml), never repeated here.

RECORD_STATUSES = ("ok", "failed", "skipped")  # records.STATUSES; repeated here to stay a leaf module


class MetricsModel(BaseModel):
    """A fixed-structure block of a record's metrics.

    An undeclared key is an error (extra="forbid"), at every level that is a MetricsModel; types are
    strict: a number written as a string, a bool where a count belongs, a float where an int
    belongs are errors (a `float` field accepts an int: a figure that happens to be whole, such
    as a setting written as `2`, is still that figure).

    `catalog_exempt`: set (to the reason) on blocks whose keys are not metric keys (the environment
    probe's OS/CPU facts, step bookkeeping), so the catalog cross-check leaves their fields alone.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    catalog_exempt: ClassVar[str | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Every value field may be absent (absent = not measured, like null): a writer that
        measured less, or an older or hand-made record, still fits. (A union member's tag field
        still decides: a block without its tag matches no member.)"""
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        for f in cls.model_fields.values():
            if f.is_required():
                f.default = None
                changed = True
        if changed:
            cls.model_rebuild(force=True)


class Empty(MetricsModel):
    """`{}`: a block the writer fills only when there is something to say (e.g. the provenance of
    a benchmark that was never loaded)."""


class StepStatus(MetricsModel):
    """One `run.step(...)` of the notebook (context.SectionRun.step); the traceback stays out."""

    catalog_exempt: ClassVar[str | None] = "step bookkeeping of context.SectionRun"
    status: Literal["ok", "failed", "skipped"]
    reason: str | None
    reason_zh: str | None = None  # a skip reason in Chinese, where the step wrote one (SectionSkipped(zh=...))
    wall_s: float


class ReferencePlanInfo(MetricsModel):
    """How the reference was loaded after the memory check (reference_model.ReferencePlan)."""

    dtype: str
    device: str
    need_bytes: int | None  # None: not computed (no weights files to count the parameters of)
    available_bytes: int | None  # None: the device's free memory could not be read
    available_source: str
    num_parameters: int
    fallback: Literal["offload", "bfloat16", "device"] | None  # None: the configured reference
    reason: str | None  # why the fallback was taken, or why memory was not checked
    offload_memory_bytes: int | None = None  # offload: weights kept in host memory, the rest on disk
    offload_folder: str | None = None  # offload: where the weights beyond that are read from
    described: str  # "float32 on cpu", or the fallback and why


class EngineStart(MetricsModel):
    """One engine or server started by the section (context.SectionRun.engine / .served)."""

    catalog_exempt: ClassVar[str | None] = "engine start bookkeeping of context.SectionRun"
    label: str
    engine: Literal["vllm", "hf", "openai", "server"]  # the engine's name; server: an OpenAI-API server
    wall_s: float | None  # None: the run's shared server, started (and timed) by the runner
    # Open: the engine keyword arguments of this start (enable_prefix_caching, speculative_config,
    # kv_transfer_config, ...), whatever the engine accepts; their schema is the engine's.
    overrides: dict[str, Any] | None = None
    shared: bool | None = None  # the runner's shared server
    url: str | None = None  # shared server only
    log: str | None = None  # a server started by the section: its log file
    reference_plan: ReferencePlanInfo | None = None  # a reference engine (SectionRun.reference)


class VllmEngineInfo(MetricsModel):
    """`VllmEngine.info()`: what the vLLM engine resolved (engines/vllm_engine.py, vllm_compat)."""

    engine: Literal["vllm"]
    vllm_version: str | None
    load_s: float
    dtype: str
    max_model_len: int | None
    enforce_eager: bool | None
    compilation_mode: str | None
    cudagraph_mode: str | None
    kv_cache_blocks: int | None
    block_size: int | None
    kv_cache_tokens: int | None
    kv_cache_max_concurrency: float | None
    enable_prefix_caching: bool | None
    enable_chunked_prefill: bool | None
    max_num_batched_tokens: int | None
    max_num_seqs: int | None
    device: str | None
    tensor_parallel_size: int | None


class HfEngineInfo(MetricsModel):
    """`HFEngine.info()` (engines/hf_engine.py)."""

    engine: Literal["hf"]
    device: str  # cpu, cuda:0, npu:0
    dtype: str
    load_s: float
    num_parameters: int
    weights_bytes: int


class OpenAIEngineInfo(MetricsModel):
    """`OpenAIEngine.info()`: a served model reached over its OpenAI API (engines/openai_engine.py)."""

    engine: Literal["openai"]
    base_url: str
    model: str
    concurrency: int  # requests in flight for a list of prompts (1: one at a time)


# The engine's own facts, by engine kind.
EngineInfo = Annotated[VllmEngineInfo | HfEngineInfo | OpenAIEngineInfo, Field(discriminator="engine")]


class ModelFile(MetricsModel):
    catalog_exempt: ClassVar[str | None] = "a file listing, not metrics"

    name: str
    bytes: int


class ModelFacts(MetricsModel):
    """The model card facts: `models.model_card_facts` (config.json + safetensors headers) with the
    model's path; written by smoke (`resolve_model`) and, when smoke did not, by the report."""

    path: str
    source: str | None = None  # builtin | local | modelscope ...: smoke only (the report has no resolver result)
    architecture: str | None
    model_type: str | None
    num_layers: int | None
    hidden_size: int | None
    intermediate_size: int | None
    num_attention_heads: int | None
    num_key_value_heads: int | None
    head_dim: int | None
    vocab_size: int | None
    max_context: int | None
    rope_theta: float | None
    tie_word_embeddings: bool | None
    config_dtype: str | None
    weight_dtype: str | None
    param_count: int | None
    weight_bytes: int | None
    safetensors_files: int
    quantization: str | None
    model_files: list[ModelFile] | None = None  # since schema 2: the folder's files, as the card lists them


class GuardResult(MetricsModel):
    """`output_guard.judge`: whether the outputs one speed figure timed were sane."""

    status: Literal["valid", "invalid", "unchecked"]
    reason: str | None
    reason_zh: str | None
    num_requests: int
    num_empty: int
    num_nonfinite: int
    corrupted_requests: int | None  # vLLM's own count (VLLM_COMPUTE_NANS_IN_LOGITS=1), None: not reported
    sampled: bool
    num_samples: int
    num_tokens_checked: int
    ref_top1_agreement: float | None
    max_gap_nats: float | None
    excess_nll_nats: float | None


class SectionMetrics(MetricsModel):
    """Base of every section's top-level metrics model: what context.SectionRun adds itself."""

    steps: dict[str, StepStatus] | None = None  # step name -> status; `add:<key>` for a refused value


# =========================================================================== validation


def _dotted(where: str, loc: tuple[Any, ...], data: Any) -> str:
    """A pydantic error location as a path into the data: `metrics.serving[2].p99_ttft_ms`.

    Pydantic puts a union member's tag or type name into the location (`engine_info.vllm.x`);
    those are not in the data and are left out. The last element is always kept: it may be a key
    that is missing."""
    out, cur = where, data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(cur, list):
            out += f"[{part}]"
            cur = cur[part] if -len(cur) <= part < len(cur) else None
        elif isinstance(cur, dict) and part in cur:
            out += f".{part}"
            cur = cur[part]
        elif last or not isinstance(cur, dict):
            out += f".{part}"
            cur = None
        # else: a union tag / member name, not part of the data
    return out


def metrics_problems(model: type[BaseModel], metrics: Any, where: str = "metrics") -> list[str]:
    """One line per way `metrics` does not fit `model` (`metrics.serving_main.p99_ttft_ms: Input
    should be a valid number`); empty when it fits."""
    try:
        model.model_validate(metrics)
    except ValidationError as exc:
        return [f"{_dotted(where, tuple(err['loc']), metrics)}: {err['msg']}" for err in exc.errors()]
    return []


def record_json_schema(models: dict[str, type[BaseModel]], schema_version: int) -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) for a record file of any section.

    `models`: section name -> its metrics model. The envelope's fields are typed (loosely where
    their content is someone else's: model, target, env, params); `metrics` is checked against
    the model of the record's `section` (one if/then per section), so a JSON Schema validator
    checks a record without this package."""
    refs, defs = models_json_schema([(m, "validation") for m in models.values()],
                                    ref_template="#/$defs/{model}")
    by_section = [{"if": {"properties": {"section": {"const": name}}, "required": ["section"]},
                   "then": {"properties": {"metrics": refs[(m, "validation")]}}}
                  for name, m in models.items()]
    # failed / skipped records say why (records.validate_record)
    by_section.append({"if": {"properties": {"status": {"enum": ["failed", "skipped"]}}, "required": ["status"]},
                       "then": {"properties": {"reason": {"type": "string", "minLength": 1}},
                                "required": ["reason"]}})
    text_or_null = {"type": ["string", "null"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://ascendeval/record.v{schema_version}.schema.json",
        "title": f"ascendeval record, schema version {schema_version}",
        "type": "object",
        "required": ["schema_version", "section", "status", "run_id", "created_at", "model", "target", "metrics"],
        "additionalProperties": False,
        "properties": {
            "schema_version": {"const": schema_version},
            "section": {"enum": list(models)},
            "status": {"enum": list(RECORD_STATUSES)},
            "reason": text_or_null,
            "reason_zh": text_or_null,
            "run_id": {"type": "string"},
            "created_at": {"type": "string"},
            "model": {"type": "object", "properties": {"id": {"type": "string"}, "name": text_or_null,
                                                       "revision": text_or_null, "dtype": text_or_null}},
            "target": {"type": "object", "properties": {"engine": {"type": "string"},
                                                        "device": {"type": "string"},
                                                        "count": {"type": ["integer", "null"]}}},
            "env": {"type": "object"},  # env.versions(): package versions, platform
            "git_hash": text_or_null,
            "params": {"type": "object"},  # the resolved section config (its schema: the config classes)
            "metrics": {"type": "object"},
            "artifacts": {"type": "array", "items": {"type": "string"}},
        },
        "allOf": by_section,
        "$defs": defs.get("$defs", {}),
    }
