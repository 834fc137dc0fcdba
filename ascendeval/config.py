"""Params schema: one YAML file per model (+ target) -> typed, validated config.

Every model is strict (`extra="forbid"`): a misspelled key, a wrong type or an unknown
engine/device/section name is reported as ONE line naming the file, the key path and what is
allowed, before any engine starts (see `ConfigError`).

Each section declares its own block in its package (`sections/<name>/config.py`); the registry puts
them under `RunConfig.sections`, where each notebook reads its own block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, create_model, ValidationError, field_validator, model_validator

from .schema import Strict
from .sections import NAMES as SECTION_NAMES, SECTIONS  # the registry is the one list of sections
ENGINES = ("vllm", "hf", "openai")
DEVICES = ("cpu", "cuda", "npu")
DTYPES = ("auto", "float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """A params file is invalid. The message is one line: file, key path, what is allowed."""




# --------------------------------------------------------------------------- model / target


class ModelConfig(Strict):
    id: str = Field(description="local path, ModelScope id (org/name) or builtin:<name>")
    name: str | None = Field(None, description="short name used for outputs/<name>/; derived from id if omitted")
    revision: str | None = Field(None, description="ModelScope revision / tag")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    trust_remote_code: bool = False
    max_model_len: int | None = Field(None, gt=0)
    chat: Literal["auto", "chat", "base"] = Field(
        "auto", description="apply the chat template (chat), plain completion (base), or detect from the tokenizer"
    )
    description: str | None = Field(None, description="one paragraph for the model card")
    description_zh: str | None = Field(None, description="the same paragraph in Chinese, for the Chinese card")

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @property
    def short_name(self) -> str:
        if self.name:
            return self.name
        base = self.id.split(":", 1)[1] if self.id.startswith("builtin:") else self.id.rstrip("/").split("/")[-1]
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base)


class TargetConfig(Strict):
    engine: Literal["vllm", "hf", "openai"] = "vllm"
    device: Literal["cpu", "cuda", "npu"] = "cpu"
    count: int = Field(1, ge=1, description="devices used (tensor_parallel_size for vllm)")
    pipeline_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = True
    max_num_seqs: int | None = Field(None, gt=0)
    max_num_batched_tokens: int | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    kv_cache_memory_bytes: int | None = Field(
        None, gt=0, description="KV cache size; required on CPU where the default memory fraction fails"
    )
    enable_prefix_caching: bool | None = None
    engine_args: dict[str, Any] = Field(default_factory=dict, description="extra vllm.LLM / vllm serve args, verbatim")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables set for engines and servers")

    @model_validator(mode="after")
    def _cpu_needs_kv_bytes(self) -> "TargetConfig":
        if self.engine == "vllm" and self.device == "cpu" and self.kv_cache_memory_bytes is None:
            self.kv_cache_memory_bytes = 1 << 30
        return self


class ServerConfig(Strict):
    kind: Literal["vllm", "sglang", "external"] = "vllm"
    url: str | None = Field(None, description="base URL of an already running OpenAI-compatible server")
    api_key: str | None = None
    served_model_name: str | None = None
    startup_timeout_s: float = Field(600, gt=0)
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _external_needs_url(self) -> "ServerConfig":
        if self.kind == "external" and not self.url:
            raise ValueError("kind 'external' needs url (e.g. http://127.0.0.1:8000)")
        return self


class OutputGuardConfig(Strict):
    """The correctness guard on speed figures (ascendeval/output_guard.py): every measurement that
    generates keeps a few outputs; they are scored under the float32 reference."""

    enabled: bool = True
    reference: bool = Field(True, description="score the kept outputs under the float32 transformers reference "
                            "(host memory: 4 bytes per parameter); false: emptiness and finiteness only")
    reference_device: Literal["cpu", "cuda", "npu"] = "cpu"
    samples: int = Field(2, ge=1, description="outputs kept per figure")
    check_tokens: int = Field(8, ge=1, description="first output tokens checked per kept output")
    tie_nats: float = Field(1.0, gt=0, description="greedy: a token may trail the reference's top-1 by this much")
    sampled_excess_nats: float = Field(
        1.5, gt=0, description="sampled: mean NLL under the reference may exceed its entropy by this much")


class ReferenceConfig(Strict):
    """How every section's float32 reference is loaded (ascendeval/reference_model.py)."""

    fallback: list[Literal["offload", "bfloat16", "device"]] = Field(
        default_factory=lambda: ["offload", "bfloat16", "device"],
        description="when float32 on the reference device does not fit, try these in order: offload (still float32 "
                    "on the host CPU, the weights that do not fit streamed from disk at each forward: same figures, "
                    "slower), bfloat16 (half the memory, same device), device (float32 on the target's "
                    "accelerator); [] = fail with the figures")
    memory_budget_gb: float | None = Field(
        None, gt=0, description="memory the reference may use; null = measured (host MemAvailable capped by the "
                                "cgroup limit, or the device's free memory)")

    @field_validator("fallback", mode="before")
    @classmethod
    def _one_fallback(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # `fallback: offload` means [offload]


# one block per registered section, each declared in its own package (sections/<name>/config.py)
SectionsConfig = create_model(
    "SectionsConfig", __base__=Strict,
    **{s.name: (s.config, Field(default_factory=s.config)) for s in SECTIONS},
)

class RunConfig(Strict):
    profile: Literal["quick", "standard", "full"] = Field(
        "standard", description="the counts of every section in one word (ascendeval/data/profiles.yaml); keys set "
                                "in this file override the profile's")
    model: ModelConfig
    target: TargetConfig = Field(default_factory=TargetConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sections: SectionsConfig = Field(default_factory=SectionsConfig)
    output_guard: OutputGuardConfig = Field(default_factory=OutputGuardConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    source_file: str | None = Field(None, exclude=True, description="set by load(); not read from YAML")
    profile_keys: list[str] = Field(default_factory=list, exclude=True,
                                    description="set by parse(): the sections.* keys the profile decided")

    def section(self, name: str) -> BaseModel:
        if name not in SECTION_NAMES:
            raise ConfigError(f"unknown section {name!r}; allowed: {', '.join(SECTION_NAMES)}")
        return getattr(self.sections, name)

    def enabled_sections(self) -> list[str]:
        return [n for n in SECTION_NAMES if getattr(self.sections, n).enabled]


# --------------------------------------------------------------------------- loading


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the schema along `loc` (the failing key's parent) and list the keys allowed there."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}).keys() - {"source_file", "profile_keys"})


def _format_error(path: str, err: dict) -> str:
    loc = tuple(p for p in err["loc"])
    key = ".".join(str(p) for p in loc) or "<top level>"
    etype = err["type"]
    if etype == "extra_forbidden":
        allowed = _allowed_keys(RunConfig, loc[:-1])
        return f"{path}: {key}: unknown key; allowed: {', '.join(allowed)}"
    if etype == "missing":
        return f"{path}: {key}: required key is missing"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {key}: {err['input']!r} is not allowed; allowed: {expected}"
    msg = err["msg"]
    if "input" in err and etype not in ("value_error",):
        return f"{path}: {key}: {msg} (got {err['input']!r})"
    return f"{path}: {key}: {msg}"


def parse(data: Any, path: str = "<params>") -> RunConfig:
    """Validate an already-parsed mapping. Raises ConfigError with one line per problem (first first)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with keys model, target, server, sections")
    from . import profiles

    name = data.get("profile", profiles.DEFAULT_PROFILE)
    applied: list[str] = []
    if name in profiles.PROFILE_NAMES:  # an unknown name: the validation below names the allowed ones
        sections, applied = profiles.apply(name, data.get("sections"), _section_defaults())
        data = {**data, "sections": sections}
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        # A misspelled key also makes the real key "missing": report the misspelling first.
        order = {"extra_forbidden": 0, "literal_error": 1, "missing": 3}
        errors = sorted(exc.errors(), key=lambda e: order.get(e["type"], 2))
        first = _format_error(path, errors[0])
        others = [".".join(str(p) for p in e["loc"]) for e in errors[1:]]
        more = f" (also: {', '.join(others)})" if others else ""
        raise ConfigError(first + more) from None
    cfg.source_file = path
    cfg.profile_keys = applied
    return cfg


def _section_defaults() -> dict[str, Any]:
    """Every section block at its defaults, as plain data (the profile's `each:` lists start here)."""
    return SectionsConfig().model_dump(mode="json")


def load(path: str | Path) -> RunConfig:
    """Load and strictly validate a params YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: params file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse(data, str(p))
