"""Operator compatibility scan: code rules on real source text, and the scan of the built-in
model against the installed vLLM registries and PyTorch's dispatcher."""

from __future__ import annotations

import json

import pytest

from ascendeval import opscan

REMOTE_CODE = '''
import torch
import triton
import triton.language as tl
try:
    from flash_attn import flash_attn_func
except ImportError:
    flash_attn_func = None


@triton.jit
def _rope_kernel(x_ptr):
    pass


def forward(x):
    y = torch.ops.my_ext.fused_rmsnorm(x)
    torch.cuda.synchronize()
    return y.cuda()
'''


def test_scan_source_finds_vendor_code_and_guards():
    rows = opscan.scan_source(REMOTE_CODE, "modeling_x.py")
    by = {(r["kind"], r["name"]): r for r in rows}
    assert by[("triton-only", "triton")]["guarded"] is False
    assert ("triton-only", "@triton.jit _rope_kernel") in by
    assert by[("cuda-only", "flash_attn")]["guarded"] is True  # try/except ImportError: optional
    assert by[("custom op", "torch.ops.my_ext.fused_rmsnorm")]["detail"] == "torch.ops namespace 'my_ext'"
    assert ("cuda-only", "torch.cuda.synchronize") in by and ("cuda-only", "y.cuda") in by
    assert all(r["where"].startswith("modeling_x.py:") for r in rows)


def test_plain_pytorch_code_has_no_findings():
    assert opscan.scan_source("import torch\nx = torch.ops.aten.add(1, 2)\ny = torch.nn.functional.silu(x)\n",
                              "m.py") == []


def test_scan_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="allowed: cpu, cuda, npu"):
        opscan.scan(tmp_path, device="tpu")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        opscan.scan(tmp_path)


@pytest.fixture(scope="module")
def tiny_dir():
    from ascendeval import config, models

    cfg = config.parse({"model": {"id": "builtin:tiny-qwen2-untrained"}})
    return models.resolve(cfg.model).path


def test_scan_builtin_model_on_cpu(tiny_dir):
    res = opscan.scan(tiny_dir, device="cpu")
    s = res.summary
    assert s["architectures"] == ["Qwen2ForCausalLM"]
    assert s["vllm_architectures"][0]["supported"] is True
    assert s["vllm_architectures"][0]["module"] == "vllm.model_executor.models.qwen2"
    ops = {r["name"]: r for r in res.rows if r["kind"] == "custom op" and r["source"] == "vllm"}
    # taken from vLLM's CustomOp registry names and the class hierarchy, not from a list here
    assert {"rms_norm", "silu_and_mul"} <= set(ops)
    assert all(r["status"] in ("device kernel", "native fallback") for r in ops.values())
    assert s["aten_trace"] == "ok" and s["aten_ops"] > 10 and s["aten_ops_without_kernel"] == 0
    traced = {r["name"] for r in res.rows if r["source"] == "aten trace"}
    assert any(n.startswith("aten::embedding") for n in traced) and any(n.startswith("aten::silu") for n in traced)
    assert s["cuda_only_count"] == 0 and s["triton_only_count"] == 0
    assert not res.table().empty


def test_scan_for_npu_says_what_it_cannot_check(tiny_dir):
    res = opscan.scan(tiny_dir, device="npu", trace=True)
    assert "torch_npu" in res.summary["aten_kernels_checked"]
    assert all(r["status"] == "unknown" for r in res.rows if r["source"] == "aten trace")
    ops = [r for r in res.rows if r["kind"] == "custom op"]
    assert ops and all(r["device_impl"] for r in ops)  # forward_oot falls back to forward_native


def test_unknown_architecture_and_remote_code(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"],
                                                      "model_type": "no_such", "auto_map": {"AutoModel": "m.X"}}))
    (tmp_path / "modeling_no_such.py").write_text(REMOTE_CODE)
    res = opscan.scan(tmp_path, device="cuda", trace=False)
    assert res.summary["vllm_architectures"][0]["supported"] is False
    assert res.summary["triton_only_count"] == 3 and res.summary["custom_kernel_count"] == 1  # 2 imports + 1 kernel
    assert res.summary["cuda_only_count"] == 3  # flash_attn (guarded), torch.cuda, .cuda()
    assert "triton" in res.summary["required_vendor_deps"] and "flash_attn" not in res.summary["required_vendor_deps"]


def test_the_scans_fixed_answers_are_said_in_both_languages():
    """The card translates opscan's fixed answers through the catalog's `values`: the strings the
    scan writes must be the catalog's keys, or the Chinese card falls back to English."""
    from ascendeval import catalog, opscan

    checked = catalog.get("aten_kernels_checked").values
    platform = catalog.get("platform_custom_ops").values
    assert opscan.backend_available("cpu")[1] in checked
    for device in ("cpu", "cuda"):
        assert opscan.register_platform_ops(device)[1] in platform
    assert all(v["zh"] != v["en"] for v in [*checked.values(), *platform.values()])
