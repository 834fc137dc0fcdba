"""Weight scan and GPTQ dequantization, on checkpoints these tests write themselves.

The GPTQ writer below is deliberately independent of ascendeval.weights: it quantizes with
round-to-nearest on the GPTQ grid and packs with a plain per-code loop in the AutoGPTQ order
(code of input row r*pf + j at bits [bits*j, bits*j+bits) of word r; zeros the same along the
output dim; v1 stores zero - 1). The dequantizer must give back exactly scale * (code - zero).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ascendeval import weights


# --------------------------------------------------------------------------- independent GPTQ writer


def _pack_loop(codes: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """codes int [R, C] -> int32 words, packing along `axis`, one code at a time."""
    pf = 32 // bits
    c = codes.astype(np.uint64)
    if axis == 1:
        c = c.T
    rows, cols = c.shape
    out = np.zeros((rows // pf, cols), dtype=np.uint64)
    for r in range(rows):
        out[r // pf] |= (c[r] & ((1 << bits) - 1)) << np.uint64(bits * (r % pf))
    out = (out & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
    return out.T.copy() if axis == 1 else out


def quantize_linear(w: torch.Tensor, bits: int, group_size: int, sym: bool, act_order: bool, fmt: str,
                    seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """RTN-quantize a [out, in] weight into GPTQ tensors; also return the exact dequantized
    reference scale16 * (code - zero) in float32."""
    out_f, in_f = w.shape
    maxq = (1 << bits) - 1
    gs = in_f if group_size == -1 else group_size
    groups = in_f // gs
    if act_order:
        perm = torch.randperm(in_f, generator=torch.Generator().manual_seed(seed))
        g_idx = torch.empty(in_f, dtype=torch.int32)
        g_idx[perm] = (torch.arange(in_f) // gs).to(torch.int32)
    else:
        g_idx = (torch.arange(in_f) // gs).to(torch.int32)
    scales = torch.empty(groups, out_f, dtype=torch.float16)
    zeros = torch.empty(groups, out_f, dtype=torch.int64)
    for g in range(groups):
        cols = w[:, g_idx == g]
        xmin = cols.min(1).values.clamp(max=0)
        xmax = cols.max(1).values.clamp(min=0)
        if sym:
            xmax = torch.maximum(xmin.abs(), xmax)
            xmin = -xmax
        scale = ((xmax - xmin) / maxq).clamp(min=1e-8)
        scales[g] = scale.to(torch.float16)
        zeros[g] = torch.full_like(xmin, (maxq + 1) // 2, dtype=torch.int64) if sym else torch.round(-xmin / scale).to(torch.int64)
    s32 = scales.to(torch.float32)[g_idx.long()].T  # [out, in]
    z = zeros[g_idx.long()].T
    codes = torch.clamp(torch.round(w / s32) + z, 0, maxq).to(torch.int64)  # [out, in]
    ref = s32 * (codes - z).to(torch.float32)
    stored_zeros = (zeros - 1) if fmt == "gptq" else zeros
    tensors = {
        "qweight": torch.from_numpy(_pack_loop(codes.T.numpy(), bits, axis=0)),
        "qzeros": torch.from_numpy(_pack_loop(stored_zeros.numpy(), bits, axis=1)),
        "scales": scales,
        "g_idx": g_idx,
    }
    return tensors, ref


def write_gptq_checkpoint(model_dir: Path, dst: Path, bits: int, group_size: int, sym: bool, act_order: bool,
                          fmt: str = "gptq", config_style: str = "config") -> dict[str, torch.Tensor]:
    """Quantize every linear inside the decoder layers of a saved fp32 model; returns the exact
    dequantized reference weight per module name."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(model_dir / "model.safetensors"))
    out: dict[str, torch.Tensor] = {}
    refs: dict[str, torch.Tensor] = {}
    for i, (name, t) in enumerate(sorted(sd.items())):
        if ".layers." in name and name.endswith("proj.weight"):
            prefix = name[: -len(".weight")]
            tens, ref = quantize_linear(t.float(), bits, group_size, sym, act_order, fmt, seed=i)
            out.update({f"{prefix}.{k}": v for k, v in tens.items()})
            refs[name] = ref
        else:
            out[name] = t.to(torch.float16) if t.is_floating_point() else t
    dst.mkdir(parents=True)
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((model_dir / "config.json").read_text())
    q = {"quant_method": "gptq", "bits": bits, "group_size": group_size, "sym": sym, "desc_act": act_order,
         "checkpoint_format": fmt}
    if config_style == "config":
        cfg["quantization_config"] = q
    else:
        (dst / "quantize_config.json").write_text(json.dumps(q))
    (dst / "config.json").write_text(json.dumps(cfg))
    return refs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A small random Qwen2 saved as fp32 safetensors (dims multiples of 32, like real models)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg).eval()
    d = tmp_path_factory.mktemp("tiny") / "fp32"
    model.save_pretrained(d, safe_serialization=True)
    return d


# --------------------------------------------------------------------------- pack / unpack


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_unpack_matches_independent_packer(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=(64, 96))
    rows = torch.from_numpy(_pack_loop(codes, bits, axis=0))
    cols = torch.from_numpy(_pack_loop(codes, bits, axis=1))
    assert torch.equal(weights.unpack_rows(rows, bits), torch.from_numpy(codes))
    assert torch.equal(weights.unpack_cols(cols, bits), torch.from_numpy(codes))
    assert torch.equal(weights.pack_rows(torch.from_numpy(codes), bits), rows)
    assert torch.equal(weights.pack_cols(torch.from_numpy(codes), bits), cols)


def test_unpack_matches_vllm_gptq_packing():
    """vLLM's own GPTQ test packer (quant_utils.gptq_pack / pack_cols) is a third implementation."""
    qu = pytest.importorskip("vllm.model_executor.layers.quantization.utils.quant_utils")
    codes = torch.randint(0, 16, (128, 64), generator=torch.Generator().manual_seed(1), dtype=torch.int32)
    packed_rows = qu.gptq_pack(codes, 4, 128, 64)
    packed_cols = qu.pack_cols(codes, 4, 128, 64)
    assert torch.equal(weights.unpack_rows(packed_rows, 4), codes.long())
    assert torch.equal(weights.unpack_cols(packed_cols, 4), codes.long())


# --------------------------------------------------------------------------- dequantize one module


@pytest.mark.parametrize("bits,group_size,sym,act_order,fmt", [
    (8, 32, True, False, "gptq"),
    (4, 32, True, False, "gptq"),
    (4, 16, False, False, "gptq"),
    (4, 32, False, True, "gptq"),
    (8, 32, False, True, "gptq_v2"),
    (2, -1, True, False, "gptq"),
    (4, -1, False, False, "gptq_v2"),
])
def test_dequantize_module_exact(bits, group_size, sym, act_order, fmt):
    torch.manual_seed(bits + group_size)
    w = torch.randn(96, 128) * 0.05
    tens, ref = quantize_linear(w, bits, group_size, sym, act_order, fmt)
    got = weights.dequantize_gptq(tens["qweight"], tens["scales"], tens["qzeros"], tens["g_idx"], bits, group_size,
                                  sym, fmt, out_dtype=torch.float32, block_rows=32)
    assert got.shape == (96, 128)
    assert torch.equal(got, ref)  # same float32 arithmetic: bit-exact
    # and it is a quantization of w: about half a step on average, at most one step (the range
    # edge can clamp, and the fp16 scale is rounded)
    err_steps = (got - w).abs() / tens["scales"].float()[tens["g_idx"].long()].T
    assert float(err_steps.max()) <= 1.0
    assert 0.15 < float(err_steps.mean()) < 0.35


def test_act_order_requires_g_idx():
    """Ignoring g_idx (recomputing i // group_size) gives a different, wrong weight."""
    torch.manual_seed(0)
    w = torch.randn(64, 128) * 0.05
    tens, ref = quantize_linear(w, 4, 32, False, True, "gptq")
    right = weights.dequantize_gptq(tens["qweight"], tens["scales"], tens["qzeros"], tens["g_idx"], 4, 32, False,
                                    out_dtype=torch.float32)
    wrong = weights.dequantize_gptq(tens["qweight"], tens["scales"], tens["qzeros"], None, 4, 32, False,
                                    out_dtype=torch.float32)
    assert torch.equal(right, ref)
    assert float((wrong - ref).abs().max()) > 1e-3


def test_bad_bits_and_mismatch_are_clear_errors():
    torch.manual_seed(0)
    tens, _ = quantize_linear(torch.randn(32, 64), 4, 32, True, False, "gptq")
    with pytest.raises(weights.WeightsError, match="bits=3 not supported"):
        weights.dequantize_gptq(tens["qweight"], tens["scales"], tens["qzeros"], tens["g_idx"], 3, 32)
    with pytest.raises(weights.WeightsError, match="g_idx has 64 entries"):
        weights.dequantize_gptq(tens["qweight"], tens["scales"], tens["qzeros"], tens["g_idx"], 8, 32)


# --------------------------------------------------------------------------- whole checkpoint round trip


@pytest.mark.parametrize("bits,group_size,sym,act_order,fmt,style", [
    (8, 32, True, False, "gptq", "config"),
    (4, 32, False, True, "gptq", "quantize_config"),
    (4, 16, True, True, "gptq_v2", "config"),
])
def test_checkpoint_round_trip_loads_and_matches(tiny_model, tmp_path, bits, group_size, sym, act_order, fmt, style):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    src = tmp_path / "gptq"
    refs = write_gptq_checkpoint(tiny_model, src, bits, group_size, sym, act_order, fmt, style)
    (src / "tokenizer_config.json").write_text("{}")  # side files are carried over
    dst = tmp_path / "fp16"
    rep = weights.dequantize_checkpoint(src, dst, dtype="float16", max_shard_bytes=40_000)  # forces sharding
    assert rep.num_quantized_modules == len(refs) == 14
    assert rep.num_act_order_modules == (14 if act_order else 0)
    assert rep.num_shards > 1 and (dst / "model.safetensors.index.json").is_file()
    assert rep.requant_exact_fraction == 1.0  # fp16 holds every dequantized value closely enough
    assert rep.code_min >= 0 and rep.code_max <= (1 << bits) - 1
    assert (dst / "tokenizer_config.json").is_file()
    cfg = json.loads((dst / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "float16"
    assert not (dst / "quantize_config.json").exists()

    # loadable by transformers, and its weights are exactly the dequantized references (in fp16)
    model = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
    sd = model.state_dict()
    for name, ref in refs.items():
        assert torch.equal(sd[name], ref.to(torch.float16).to(torch.float32)), name
    # no leftover GPTQ tensors
    written = {}
    for f in dst.glob("*.safetensors"):
        written.update(load_file(str(f)))
    assert not [n for n in written if n.rsplit(".", 1)[-1] in ("qweight", "qzeros", "scales", "g_idx")]

    # and it computes what the float reference model computes with those weights
    orig = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, ref in refs.items():
            orig.get_parameter(name).copy_(ref.to(torch.float16).to(torch.float32))
        for name, p in orig.named_parameters():
            if name not in refs:
                p.copy_(p.to(torch.float16).to(torch.float32))
        ids = torch.tensor([[1, 5, 9, 33, 7, 100, 200]])
        a, b = orig(ids).logits, model(ids).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_dequant_refuses_non_gptq_and_busy_destination(tiny_model, tmp_path):
    with pytest.raises(weights.WeightsError, match="nothing to dequantize"):
        weights.dequantize_checkpoint(tiny_model, tmp_path / "x")
    src = tmp_path / "gptq"
    write_gptq_checkpoint(tiny_model, src, 4, 32, True, False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    with pytest.raises(weights.WeightsError, match="not empty"):
        weights.dequantize_checkpoint(src, busy)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"]["quant_method"] = "awq"
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(weights.WeightsError, match="quant_method 'awq' is not supported; allowed: gptq"):
        weights.dequantize_checkpoint(src, tmp_path / "y")


def test_dequantize_cli(tiny_model, tmp_path, capsys):
    src = tmp_path / "gptq"
    write_gptq_checkpoint(tiny_model, src, 8, 32, True, False)
    rc = weights.dequantize_cli([str(src), str(tmp_path / "out"), "--dtype", "bfloat16", "--json",
                                 str(tmp_path / "rep.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "num_quantized_modules" in out and "14" in out
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["dtype"] == "bfloat16" and len(rep["modules"]) == 14
    # bf16 keeps 8 significant bits: 8-bit codes far from the zero point cannot all round-trip
    assert 0.0 < rep["requant_exact_fraction"] <= 1.0
    assert weights.dequantize_cli([str(tmp_path / "nope"), str(tmp_path / "o2")]) == 2


# --------------------------------------------------------------------------- scan


def test_scan_clean_model_has_no_flags(tiny_model):
    res = weights.scan_weights(tiny_model)
    s = res.summary()
    assert s["num_tensors"] > 10 and s["num_nan_values"] == 0 and s["num_inf_values"] == 0
    assert s["num_flagged_tensors"] == 0, s["flagged"]
    emb = next(t for t in res.tensors if t.name.endswith("embed_tokens.weight"))
    assert emb.std == pytest.approx(0.02, rel=0.1)  # transformers' init std
    assert emb.min < 0 < emb.max and emb.l2_norm > 0


def test_scan_streams_in_chunks_and_matches_full_stats(tiny_model):
    from safetensors.torch import load_file

    res = weights.scan_weights(tiny_model, chunk_elems=1000)  # many chunks per tensor
    sd = load_file(str(tiny_model / "model.safetensors"))
    for t in res.tensors:
        x = sd[t.name].double()
        assert t.mean == pytest.approx(float(x.mean()), abs=1e-12)
        assert t.std == pytest.approx(float(x.std(unbiased=False)), rel=1e-9, abs=1e-15)
        assert t.min == float(x.min()) and t.max == float(x.max())


def test_scan_detects_perturbed_weights(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_model / "model.safetensors"))
    sd["model.layers.1.mlp.down_proj.weight"][3, 7] = 25.0  # one huge weight
    sd["model.layers.0.self_attn.o_proj.weight"][0, 0] = float("nan")
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file(sd, str(bad / "model.safetensors"))
    res = weights.scan_weights(bad)
    flagged = res.summary()["flagged"]
    assert any("outlier" in f for f in flagged["model.layers.1.mlp.down_proj.weight"])
    assert "nan x1" in flagged["model.layers.0.self_attn.o_proj.weight"]
    assert res.summary()["num_nan_values"] == 1
    assert set(flagged) == {"model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.o_proj.weight"}


def test_scan_peer_rule_flags_mis_scaled_layer(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(32, 32, generator=g) * 0.02 for i in range(6)}
    sd["model.layers.4.mlp.up_proj.weight"] *= 40.0
    sd["model.norm.weight"] = torch.ones(32)  # constant 1-D norm: legitimate, not flagged
    save_file(sd, str(tmp_path / "model.safetensors"))
    res = weights.scan_weights(tmp_path)
    flagged = res.summary()["flagged"]
    assert list(flagged) == ["model.layers.4.mlp.up_proj.weight"]
    assert any("std" in f and "x peers" in f for f in flagged["model.layers.4.mlp.up_proj.weight"])


def test_scan_cli(tiny_model, tmp_path, capsys):
    assert weights.scan_weights_cli([str(tiny_model), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "no tensor flagged" in out and "NaN 0" in out
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["summary"]["num_tensors"] == len(data["tensors"])
    assert weights.scan_weights_cli([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
