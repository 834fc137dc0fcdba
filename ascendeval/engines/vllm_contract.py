"""What `vllm_compat` relies on in vLLM, as data, and a checker that reads it from vLLM's source.

Every attribute, method, module, engine argument and metric name the seam touches is one
`Item`. `check_source(root)` answers present / absent for each by reading the Python source under
`root/vllm` with `ast` (no import, so a vLLM built for another torch can be checked here);
`benchmarks/vllm_versions.py` runs it on the wheels of the vLLM versions vllm-ascend pairs with.
For every item that may be absent, `if_absent` says what the seam does; a required item that is
absent is a version this project cannot run on.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

NOT_REPORTED = "recorded as null, 'not reported by vLLM <version>'"


@dataclass(frozen=True)
class Item:
    id: str            # what the seam reads, e.g. "RequestStateStats.num_preemptions"
    kind: str          # module | name | field | method | engine_arg | metric
    modules: tuple[str, ...]  # where it lives, newest layout first
    required: bool = True
    if_absent: str = "the seam fails that step with vLLM's own error"
    param: str | None = None  # for a method: a parameter the seam passes


def _fields(cls: str, module: str, names: str, required: bool = True, if_absent: str | None = None) -> list[Item]:
    return [Item(f"{cls}.{n}", "field", (module,), required, if_absent or
                 ("the step that reads it fails" if required else NOT_REPORTED)) for n in names.split()]


# Engine arguments the project emits (engine_kwargs of the shipped params, and the overrides
# sections add: perf, smoke's dummy gate, features' engines).
ENGINE_ARGS = ("dtype trust_remote_code tensor_parallel_size pipeline_parallel_size enforce_eager max_num_seqs "
               "max_num_batched_tokens gpu_memory_utilization kv_cache_memory_bytes enable_prefix_caching "
               "max_model_len revision distributed_executor_backend disable_log_stats load_format "
               "kv_transfer_config speculative_config enable_chunked_prefill seed")

CONTRACT: list[Item] = [
    # engine construction and generation
    Item("LLM", "name", ("vllm.entrypoints.llm",)),
    Item("LLM.generate", "method", ("vllm.entrypoints.llm",)),
    Item("LLM.chat", "method", ("vllm.entrypoints.llm",)),
    Item("LLM.get_tokenizer", "method", ("vllm.entrypoints.llm",)),
    Item("LLM.get_metrics", "method", ("vllm.entrypoints.llm",), False, "engine counters ({}) " + NOT_REPORTED),
    Item("SamplingParams", "name", ("vllm.sampling_params",)),
    *_fields("SamplingParams", "vllm.sampling_params",
             "max_tokens temperature top_p top_k ignore_eos seed stop logprobs prompt_logprobs"),
    *_fields("RequestOutput", "vllm.outputs", "prompt_token_ids outputs prompt_logprobs"),
    *_fields("RequestOutput", "vllm.outputs", "metrics num_cached_tokens", False),
    *_fields("CompletionOutput", "vllm.outputs", "text token_ids logprobs finish_reason"),
    # per-request timestamps (features' queue / prefill / decode split)
    *_fields("RequestStateStats", "vllm.v1.metrics.stats",
             "queued_ts scheduled_ts first_token_ts last_token_ts first_token_latency num_generation_tokens is_corrupted"),
    *_fields("RequestStateStats", "vllm.v1.metrics.stats", "num_preemptions", False),
    # resolved configuration (engine info, graph mode, KV-cache facts)
    *_fields("LLMEngine", "vllm.v1.engine.llm_engine", "vllm_config engine_core"),
    *_fields("VllmConfig", "vllm.config.vllm",
             "model_config cache_config scheduler_config compilation_config device_config parallel_config"),
    *_fields("ModelConfig", "vllm.config.model", "enforce_eager max_model_len dtype"),
    *_fields("CacheConfig", "vllm.config.cache", "num_gpu_blocks block_size enable_prefix_caching"),
    *_fields("CacheConfig", "vllm.config.cache", "kv_cache_size_tokens kv_cache_max_concurrency", False,
             "computed from num_gpu_blocks x block_size (and / max_model_len)"),
    *_fields("SchedulerConfig", "vllm.config.scheduler", "enable_chunked_prefill max_num_batched_tokens max_num_seqs"),
    *_fields("CompilationConfig", "vllm.config.compilation", "mode", False, "read from `level` (older vLLM)"),
    *_fields("CompilationConfig", "vllm.config.compilation", "cudagraph_mode", False),
    *_fields("DeviceConfig", "vllm.config.device", "device_type", False),
    *_fields("ParallelConfig", "vllm.config.parallel", "tensor_parallel_size"),
    # shutdown with a grace period
    Item("MPClient.shutdown", "method", ("vllm.v1.engine.core_client",), False,
         "shutdown() called without a timeout", param="timeout"),
    Item("InprocClient.shutdown", "method", ("vllm.v1.engine.core_client",), False,
         "shutdown() called without a timeout", param="timeout"),
    # registries: plugins, models, custom ops, KV connectors
    Item("load_general_plugins", "name", ("vllm.plugins",)),
    Item("ModelRegistry", "name", ("vllm.model_executor.models.registry",)),
    Item("CustomOp", "name", ("vllm.model_executor.custom_op",)),
    Item("CustomOp.register_oot", "method", ("vllm.model_executor.custom_op",)),
    Item("op_registry_oot", "name", ("vllm.model_executor.custom_op",), False,
         "read as CustomOp.op_registry_oot (older vLLM)"),
    Item("PluggableLayer", "name", ("vllm.model_executor.custom_op",), False, "layers scanned as CustomOp only"),
    *_fields("KVConnectorFactory", "vllm.distributed.kv_transfer.kv_connector.factory", "_registry", False,
             "connector names not checked before the engine starts"),
    # servers
    Item("api_server module", "module", ("vllm.entrypoints.openai.api_server",)),
    Item("vllm serve", "module", ("vllm.entrypoints.cli.serve",), False, "servers start with the module form"),
    # `vllm bench serve` helpers used by benchmarks/serve_vs_vllm_bench.py (vllm_compat.BENCH_HELPERS)
    Item("add_cli_args", "name", ("vllm.benchmarks.serve",), False, "the comparison script cannot run"),
    Item("main", "name", ("vllm.benchmarks.serve",), False, "the comparison script cannot run"),
    Item("calculate_metrics", "name", ("vllm.benchmarks.serve",), False, "the comparison script cannot run"),
    Item("get_samples", "name", ("vllm.benchmarks.datasets", "vllm.benchmarks.datasets.datasets"), False,
         "the comparison script cannot run"),
    Item("ASYNC_REQUEST_FUNCS", "name", ("vllm.benchmarks.lib.endpoint_request_func",
                                         "vllm.benchmarks.backend_request_func"), False,
         "the comparison script cannot run"),
    Item("get_tokenizer", "name", ("vllm.tokenizers", "vllm.transformers_utils.tokenizer"), False,
         "the comparison script cannot run"),
    Item("FlexibleArgumentParser", "name", ("vllm.utils.argparse_utils", "vllm.utils"), False,
         "the comparison script cannot run"),
    # engine arguments
    *[Item(f"EngineArgs.{a}", "engine_arg", ("vllm.engine.arg_utils",),
           if_absent="the params' setting is refused by vLLM at engine start") for a in ENGINE_ARGS.split()],
    # Prometheus / get_metrics names the features section reads
    *[Item(name, "metric", ("vllm.v1.metrics.loggers", "vllm.v1.spec_decode.metrics"), False,
           "the feature's counter is " + NOT_REPORTED)
      for name in ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:external_prefix_cache_queries",
                   "vllm:external_prefix_cache_hits", "vllm:spec_decode_num_drafts",
                   "vllm:spec_decode_num_draft_tokens", "vllm:spec_decode_num_accepted_tokens",
                   "vllm:spec_decode_num_accepted_tokens_per_pos")],
]


# --------------------------------------------------------------------------- reading source


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=256)
def _parse(path: str) -> ast.Module | None:
    try:
        return ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def _top_names(tree: ast.Module) -> set[str]:
    """Names a module defines or re-exports at top level (defs, classes, assignments, imports,
    and the keys of a lazy-export table such as vllm/__init__.py's MODULE_ATTRS)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If):  # TYPE_CHECKING blocks and version switches
            for sub in node.body + node.orelse:
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in sub.names}
                elif isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                    names.add(sub.name)
    return names


def _class_fields(cls: ast.ClassDef) -> set[str]:
    """Declared fields (annotations, class assignments), __init__ parameters and self.X assignments."""
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if any(isinstance(d, ast.Name) and d.id in ("property", "cached_property") or
                   isinstance(d, ast.Attribute) and d.attr in ("cached_property",) for d in node.decorator_list):
                names.add(node.name)
            if node.name == "__init__":
                names |= {a.arg for a in node.args.args + node.args.kwonlyargs}
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Assign, ast.AnnAssign)):
                        targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                        names |= {t.attr for t in targets if isinstance(t, ast.Attribute)
                                  and isinstance(t.value, ast.Name) and t.value.id == "self"}
    return names


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return next((n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name),
                None)


def _has_string(tree: ast.Module, text: str) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == text for n in ast.walk(tree))


def check_item(root: Path, item: Item) -> tuple[str, str]:
    """(status, where) of one item in the vLLM source under root: status present / absent /
    changed (a method without the parameter the seam passes)."""
    looked = []
    for module in item.modules:
        path = _module_file(root, module)
        looked.append(module)
        if path is None:
            continue
        tree = _parse(str(path))
        if tree is None:
            continue
        if item.kind == "module":
            return "present", module
        if item.kind == "metric":
            if _has_string(tree, item.id):
                return "present", module
            continue
        if item.kind == "name":
            if item.id in _top_names(tree):
                return "present", module
            continue
        if item.kind == "engine_arg":
            cls = _class(tree, "EngineArgs")
            if cls is not None and item.id.split(".", 1)[1] in _class_fields(cls):
                return "present", module
            continue
        cls_name, _, attr = item.id.partition(".")
        cls = _class(tree, cls_name)
        if cls is None:
            continue
        if item.kind == "field" and attr in _class_fields(cls):
            return "present", module
        if item.kind == "method":
            fn = _method(cls, attr)
            if fn is not None:
                if item.param and item.param not in {a.arg for a in fn.args.args + fn.args.kwonlyargs}:
                    return "changed", f"{module} (no '{item.param}' parameter)"
                return "present", module
    return "absent", " or ".join(looked)


def check_source(root: Path) -> list[dict[str, Any]]:
    """Every contract item against the vLLM source under `root` (the directory holding vllm/)."""
    rows = []
    for item in CONTRACT:
        status, where = check_item(root, item)
        rows.append({"item": item.id, "kind": item.kind, "required": item.required, "status": status,
                     "where": where, "if_absent": item.if_absent})
    return rows


CHECKED_VERSIONS = Path(__file__).resolve().parents[1] / "data" / "vllm_contract_checked.json"


def verdict(version: str | None, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The seam's word on a vLLM version for the environment record and the card.

    "contract checked" for a version `benchmarks/vllm_versions.py` checked (listed in
    data/vllm_contract_checked.json) with every required item present; "untested version" with
    the count of items the live check of the installed source could not confirm otherwise."""
    checked = json.loads(CHECKED_VERSIONS.read_text(encoding="utf-8")) if CHECKED_VERSIONS.is_file() else {}
    base = (version or "").split("+")[0]
    missing_required = [r["item"] for r in rows or [] if r["required"] and r["status"] != "present"]
    optional_absent = [r["item"] for r in rows or [] if not r["required"] and r["status"] != "present"]
    if version is None:
        return {"vllm_version": None, "verdict": "vLLM not installed", "optional_absent": [], "required_missing": []}
    if base in checked.get("versions", {}) and not missing_required:
        text = "contract checked"
    elif missing_required:
        text = f"unsupported: {len(missing_required)} required items missing"
    else:
        unknown = len(optional_absent) if rows is not None else len(CONTRACT)
        text = f"untested version: {unknown} items unknown"
    return {"vllm_version": version, "verdict": text, "optional_absent": optional_absent,
            "required_missing": missing_required}


def installed_source_root() -> Path | None:
    """The directory holding the installed `vllm` package (found without importing it)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).parent
