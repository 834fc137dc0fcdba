"""Operator compatibility scan of a model directory, derived from code and registries.

Three sources, none of them a hand-written list of "supported ops":

1. **vLLM's implementation** of the architecture (`vllm.model_executor.models.registry`,
   plugins loaded, so vllm-ascend's own models count on Ascend): the layers its module imports;
   for each `CustomOp` / `PluggableLayer` the method vLLM's dispatcher would call on the target
   device (`forward_cpu`, `forward_cuda`, or on an out-of-tree platform such as NPU the class a
   plugin registered in `op_registry_oot`, else `forward_oot`), following the class hierarchy
   to see whether it is the op's own kernel or the PyTorch-native fallback.
2. **The model's Python code** (remote code in the directory, and the transformers modelling
   module of its `model_type`): imports and calls that tie it to one vendor -- Triton kernels,
   CUDA extensions (flash-attn, xformers, apex, `cpp_extension`), `torch.cuda` / `.cuda()`,
   `torch.ops.<namespace>` custom ops -- and whether each is guarded (inside try / if).
3. **The aten operators one forward actually dispatches**, traced on the meta device (no memory,
   one layer: every layer runs the same ops) and checked against PyTorch's dispatcher for the
   target's dispatch key (CPU, CUDA, PrivateUse1 = NPU via torch_npu).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .engines import vllm_compat

# Modules whose import ties code to one vendor's stack, by the kind of dependency. These are
# detection rules for code (what a dependency *is*), not a list of which ops are supported.
VENDOR_MODULES = {
    "triton": "triton-only",
    "flash_attn": "cuda-only", "flash_attn_2_cuda": "cuda-only", "xformers": "cuda-only", "apex": "cuda-only",
    "mamba_ssm": "cuda-only", "causal_conv1d": "cuda-only", "deepspeed": "cuda-only", "bitsandbytes": "cuda-only",
    "torch.utils.cpp_extension": "custom-kernel", "cupy": "cuda-only", "pycuda": "cuda-only",
}
DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA", "npu": "PrivateUse1"}
FORWARD_METHOD = {"cpu": "forward_cpu", "cuda": "forward_cuda", "npu": "forward_oot"}


@dataclass
class OpScan:
    model_dir: str
    device: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        cols = ["source", "kind", "name", "where", "device_impl", "status", "detail"]
        return df[[c for c in cols if c in df.columns]] if not df.empty else df


# =========================================================================== 1. vLLM registry


def vllm_architecture(arch: str) -> dict[str, Any]:
    """Whether the installed vLLM (with its plugins) implements `arch`, and in which module."""
    try:
        vllm_compat.load_plugins()  # out-of-tree platforms (vllm-ascend) register models and ops here
        ModelRegistry = vllm_compat.model_registry()  # noqa: N806 - vLLM's name
    except Exception as exc:  # noqa: BLE001 - no vLLM is a result
        return {"supported": None, "reason": f"vllm not importable: {type(exc).__name__}: {exc}"}
    if arch not in ModelRegistry.get_supported_archs():
        return {"supported": False, "reason": f"{arch} is not in vLLM's model registry"}
    entry = ModelRegistry.models[arch]
    module = getattr(entry, "module_name", None) or getattr(getattr(entry, "model_cls", None), "__module__", None)
    return {"supported": True, "module": module, "class": getattr(entry, "class_name", arch)}


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """{local name: 'module.attr'} for every `from m import a [as b]` / `import m` in a module."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name
    return out


def register_platform_ops(device: str) -> tuple[bool, str]:
    """Put the platform's out-of-tree custom ops into this process's `op_registry_oot`.

    vllm-ascend registers its ops (AscendRMSNorm, AscendSiluAndMul, AscendRotaryEmbedding, the
    parallel linears, ...) only inside its worker (`NPUWorker.__init__` calls
    `vllm_ascend.utils.register_ascend_customop`), so a scan in the notebook process would see an
    empty registry and report every vLLM custom op as a native fallback. The same function is
    called here; it only fills the registry (no device access). Returns (registered, how)."""
    if device != "npu":
        return True, f"in-tree: vLLM's own {FORWARD_METHOD[device]} (no out-of-tree platform for {device})"
    try:
        from vllm_ascend.utils import register_ascend_customop

        register_ascend_customop()
    except Exception as exc:  # noqa: BLE001 - not installed here, or it failed: say so, do not guess
        return False, (f"vllm_ascend's custom ops could not be registered ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:160] if str(exc) else ''}): their NPU implementation is unknown")
    return True, "registered with vllm_ascend.utils.register_ascend_customop (as vllm-ascend's worker does)"


def custom_op_impl(cls: type, device: str) -> tuple[str, str]:
    """(implementation, status) of a vLLM CustomOp class on `device`, as `dispatch_forward` picks it.

    status: 'device kernel' (the class or a plugin's replacement implements the device method),
    'native fallback' (the PyTorch-native forward, which runs wherever its aten ops do), or
    'missing' (neither)."""
    CustomOp, _, op_registry_oot = vllm_compat.custom_op_api()  # noqa: N806 - vLLM's names

    replaced = op_registry_oot.get(cls.__name__)
    impl = replaced or cls
    method = FORWARD_METHOD[device]
    owner = next((k for k in impl.__mro__ if method in k.__dict__), None)
    prefix = f"oot {impl.__module__}.{impl.__name__}: " if replaced else ""
    if owner is not None and owner is not CustomOp and (owner is impl or issubclass(owner, CustomOp)):
        if replaced or owner is not CustomOp:
            return f"{prefix}{owner.__name__}.{method}", "device kernel"
    native_owner = next((k for k in impl.__mro__ if "forward_native" in k.__dict__), None)
    if native_owner is not None and native_owner is not CustomOp:
        return f"{prefix}{native_owner.__name__}.forward_native", "native fallback"
    return f"{prefix}no {method} / forward_native", "missing"


def scan_vllm_module(module_name: str, device: str, platform_ops: bool = True) -> list[dict[str, Any]]:
    """The vLLM layers the implementation imports, and each CustomOp's implementation on device.
    `platform_ops` False: the platform's own ops could not be registered, so what replaces a
    vLLM op on this device is unknown (never shown as a native fallback)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin:
        return [{"source": "vllm", "kind": "module", "name": module_name, "status": "missing",
                 "detail": "module not found"}]
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    try:
        CustomOp, PluggableLayer, op_registry_oot = vllm_compat.custom_op_api()  # noqa: N806 - vLLM's names
        PluggableLayer = PluggableLayer or CustomOp  # noqa: N806 - older vLLM: no pluggable layers
    except Exception as exc:  # noqa: BLE001
        return [{"source": "vllm", "kind": "module", "name": module_name, "status": "unknown",
                 "detail": f"vllm custom_op not importable: {exc}"}]
    rows = []
    for local, full in sorted(_imported_names(tree).items()):
        if not full.startswith("vllm.model_executor.layers."):
            continue
        mod_name, _, attr = full.rpartition(".")
        try:
            obj = getattr(importlib.import_module(mod_name), attr)
        except Exception as exc:  # noqa: BLE001 - a layer that cannot be imported here is a finding
            rows.append({"source": "vllm", "kind": "layer", "name": attr, "where": mod_name, "status": "unknown",
                         "detail": f"import failed: {type(exc).__name__}: {exc}"[:200]})
            continue
        if inspect.isclass(obj) and issubclass(obj, CustomOp):
            impl, status = custom_op_impl(obj, device)
            if not platform_ops and status != "device kernel":
                impl, status = f"{impl} unless the platform replaces it", "unknown"
            rows.append({"source": "vllm", "kind": "custom op", "name": getattr(obj, "name", attr), "where": mod_name,
                         "device_impl": impl, "status": status})
        elif inspect.isclass(obj) and issubclass(obj, PluggableLayer):
            repl = op_registry_oot.get(obj.__name__)
            rows.append({"source": "vllm", "kind": "pluggable layer", "name": attr, "where": mod_name,
                         "device_impl": f"oot {repl.__module__}.{repl.__name__}" if repl else "in-tree",
                         "status": "device kernel" if repl else "in-tree"})
        elif inspect.isclass(obj):
            rows.append({"source": "vllm", "kind": "layer", "name": attr, "where": mod_name, "status": "in-tree"})
        else:
            rows.append({"source": "vllm", "kind": "function", "name": attr, "where": mod_name, "status": "in-tree",
                         "detail": "chooses its implementation at run time"})
    return rows


# =========================================================================== 2. model code


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True when the node sits inside a try/except or an if (an optional, fall-back-able path)."""
    p = parents.get(node)
    while p is not None:
        if isinstance(p, (ast.Try, ast.If)):
            return True
        p = parents.get(p)
    return False


def scan_source(text: str, where: str) -> list[dict[str, Any]]:
    """Vendor-specific dependencies in one Python file (see VENDOR_MODULES and the call rules)."""
    tree = ast.parse(text)
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    rows: list[dict[str, Any]] = []

    def add(kind: str, name: str, node: ast.AST, detail: str = "") -> None:
        rows.append({"source": "model code", "kind": kind, "name": name, "where": f"{where}:{node.lineno}",
                     "guarded": _guarded(node, parents), "detail": detail})

    for node in ast.walk(tree):
        mods: list[str] = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module]
        for mod in mods:
            kind = next((k for m, k in VENDOR_MODULES.items() if mod == m or mod.startswith(m + ".")), None)
            if kind:
                add(kind, mod, node, "import")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in node.decorator_list:
                src = ast.unparse(d)
                if src.startswith(("triton.jit", "triton.autotune", "tl.jit")):
                    add("triton-only", f"@{src.split('(')[0]} {node.name}", node, "Triton kernel")
        if isinstance(node, ast.Attribute):
            src = ast.unparse(node)
            if src.startswith("torch.ops.") and src.count(".") >= 3:
                ns = src.split(".")[2]
                if ns not in ("aten", "prims") and not isinstance(parents.get(node), ast.Attribute):
                    add("custom op", src, node, f"torch.ops namespace '{ns}'")
            elif src.startswith("torch.cuda.") and not isinstance(parents.get(node), ast.Attribute):
                add("cuda-only", src, node, "torch.cuda API")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
            add("cuda-only", ast.unparse(node.func), node, ".cuda() call")
    return rows


def model_code_files(model_dir: Path, config: dict[str, Any]) -> list[tuple[str, Path]]:
    """(label, path) of the model's code: remote code in the directory, and the transformers
    modelling module of its model_type when transformers ships one."""
    files = [(f"remote:{p.name}", p) for p in sorted(model_dir.glob("*.py"))]
    mtype = config.get("model_type")
    if mtype:
        name = mtype.replace("-", "_")
        try:
            spec = importlib.util.find_spec(f"transformers.models.{name}.modeling_{name}")
        except ModuleNotFoundError:  # transformers has no package for this model_type
            spec = None
        if spec is not None and spec.origin:
            files.append((f"transformers.models.{name}.modeling_{name}", Path(spec.origin)))
    return files


# =========================================================================== 3. aten trace


def backend_available(device: str) -> tuple[bool, str]:
    """Whether this torch can answer for the device's dispatch key at all."""
    import torch

    if device == "cpu":
        return True, "CPU kernels of this torch"
    if device == "cuda":
        return (torch.backends.cuda.is_built(), "CUDA kernels of this torch" if torch.backends.cuda.is_built()
                else "this torch is built without CUDA: CUDA kernels cannot be checked here")
    if importlib.util.find_spec("torch_npu") is None:
        return False, "torch_npu is not installed here: NPU (PrivateUse1) kernels cannot be checked"
    try:
        import torch_npu  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"torch_npu does not import: {type(exc).__name__}: {exc}"
    return True, "PrivateUse1 kernels registered by torch_npu"


def trace_aten_ops(model_dir: Path, trust_remote_code: bool = False, seq_len: int = 8) -> dict[str, int]:
    """{aten op: calls} of one forward of the model shrunk to one layer and a 1024-token vocab
    (every layer runs the same ops; the vocab size changes no op), run for real on CPU.

    Not on the meta device: masking code calls .item(), which meta tensors cannot answer."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if getattr(cfg, key, None):
            setattr(cfg, key, 1)
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:1]
    if getattr(cfg, "vocab_size", 0) > 1024:
        cfg.vocab_size = 1024
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if isinstance(getattr(cfg, key, None), int) and getattr(cfg, key) >= 1024:
                setattr(cfg, key, None)
    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code, dtype=torch.bfloat16)
    counts: dict[str, int] = {}

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            schema = func._schema  # overload-qualified: the dispatcher answers per overload
            name = f"{schema.name}.{schema.overload_name}" if schema.overload_name else schema.name
            counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    ids = torch.arange(seq_len, dtype=torch.long).unsqueeze(0) % cfg.vocab_size
    with torch.no_grad(), Recorder():
        model(input_ids=ids, use_cache=False)
    return counts


# The trace runs on the CPU, so it records the CPU backend's lowerings of some public ops. On the
# device the public op lowers to that backend's own kernel (CUDA: flash / memory-efficient SDPA;
# torch_npu: its fused attention), so these rows check the public op the model called.
CPU_LOWERINGS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "aten::scaled_dot_product_attention",
    "aten::_scaled_dot_product_fused_attention_overrideable": "aten::scaled_dot_product_attention",
}
_CPU_ONLY_MARKERS = ("_for_cpu", "mkldnn", "onednn")


def device_view_of_cpu_trace(ops: dict[str, int], device: str
                             ) -> tuple[dict[str, int], dict[str, list[str]], list[str]]:
    """(ops as the device would run them, {public op: CPU lowerings it replaced}, CPU-only ops left
    out). On the CPU the trace is the truth and nothing changes. Elsewhere a known CPU lowering is
    replaced by its public op; any other CPU-only op (mkldnn/oneDNN, `*_for_cpu`) is left out and
    named, because it cannot be what the device runs and asking the device's dispatcher about it
    would print a false "no kernel"."""
    if device == "cpu":
        return dict(ops), {}, []
    out: dict[str, int] = {}
    remapped: dict[str, list[str]] = {}
    left_out: list[str] = []
    for op, n in ops.items():
        base = op.split(".")[0]
        if base in CPU_LOWERINGS:
            public = CPU_LOWERINGS[base]
            out[public] = out.get(public, 0) + n
            remapped.setdefault(public, []).append(op)
        elif any(m in base for m in _CPU_ONLY_MARKERS):
            left_out.append(op)
        else:
            out[op] = out.get(op, 0) + n
    return out, remapped, sorted(left_out)


def has_kernel(op: str, key: str) -> bool | None:
    """Whether the dispatcher has a kernel for op at key (or a composite that works everywhere)."""
    import torch

    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
                    or torch._C._dispatch_has_kernel_for_dispatch_key(op, "CompositeExplicitAutograd")
                    or torch._C._dispatch_has_kernel_for_dispatch_key(op, "CompositeImplicitAutograd"))
    except RuntimeError:
        return None


# =========================================================================== scan


def scan(model_dir: str | Path, device: str = "cpu", trace: bool = True, trust_remote_code: bool = False) -> OpScan:
    """Scan a model directory (config.json + code) for the target device."""
    if device not in FORWARD_METHOD:
        raise ValueError(f"device {device!r}; allowed: {', '.join(FORWARD_METHOD)}")
    d = Path(model_dir)
    cfg_file = d / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{d}: no config.json (give a model directory)")
    config = json.loads(cfg_file.read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"model_dir": str(d), "device": device, "architectures": archs,
                               "model_type": config.get("model_type"), "auto_map": bool(config.get("auto_map"))}

    vllm_info = [dict(architecture=a, **vllm_architecture(a)) for a in archs]
    summary["vllm_architectures"] = vllm_info
    platform_ok, summary["platform_custom_ops"] = (
        register_platform_ops(device) if any(i["supported"] for i in vllm_info) else (True, None))
    for info in vllm_info:
        rows.append({"source": "vllm", "kind": "architecture", "name": info["architecture"],
                     "where": info.get("module"), "status": "supported" if info["supported"] else (
                         "unsupported" if info["supported"] is False else "unknown"), "detail": info.get("reason")})
        if info["supported"] and info.get("module"):
            rows.extend(scan_vllm_module(info["module"], device, platform_ok))

    for label, path in model_code_files(d, config):
        for r in scan_source(path.read_text(encoding="utf-8", errors="replace"), label):
            r["status"] = "optional (guarded)" if r.pop("guarded") else "required"
            rows.append(r)

    if trace:
        ok, why = backend_available(device)
        try:
            ops = trace_aten_ops(d, trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be traced is reported, not fatal
            summary["aten_trace"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        else:
            key = DISPATCH_KEYS[device]
            ops, remapped, left_out = device_view_of_cpu_trace(ops, device)
            for op, n in sorted(ops.items()):
                k = has_kernel(op, key) if ok else None
                detail = why if not ok else (f"traced on the CPU as {', '.join(remapped[op])}" if op in remapped else None)
                rows.append({"source": "aten trace", "kind": "aten op", "name": op, "where": f"{n} calls",
                             "device_impl": key if k else None,
                             "status": "kernel" if k else ("no kernel" if k is False else "unknown"),
                             "detail": detail})
            summary["aten_cpu_lowerings_left_out"] = left_out
            summary["aten_trace"] = "ok"
            summary["aten_ops"] = len(ops)
            summary["aten_ops_without_kernel"] = sum(1 for r in rows if r["source"] == "aten trace"
                                                     and r["status"] == "no kernel")
            summary["aten_kernels_checked"] = why if ok else f"not checked: {why}"

    code = [r for r in rows if r["source"] == "model code"]
    summary.update({
        "cuda_only_count": sum(1 for r in code if r["kind"] == "cuda-only"),
        "triton_only_count": sum(1 for r in code if r["kind"] == "triton-only"),
        "custom_kernel_count": sum(1 for r in code if r["kind"] in ("custom op", "custom-kernel")),
        "required_vendor_deps": sorted({r["name"] for r in code if r["status"] == "required"}),
        "vllm_custom_ops": sum(1 for r in rows if r["kind"] == "custom op" and r["source"] == "vllm"),
        "vllm_custom_ops_device_kernel": sum(1 for r in rows if r["source"] == "vllm" and r["kind"] == "custom op"
                                             and r["status"] == "device kernel"),
        "vllm_custom_ops_native_fallback": sum(1 for r in rows if r["source"] == "vllm" and r["kind"] == "custom op"
                                               and r["status"] == "native fallback"),
        "vllm_custom_ops_missing": sum(1 for r in rows if r["source"] == "vllm" and r["kind"] == "custom op"
                                       and r["status"] == "missing"),
    })
    return OpScan(str(d), device, rows, summary)
