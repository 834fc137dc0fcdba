"""Weight tools: a sanity scan over safetensors, and GPTQ -> fp16/bf16 dequantization.

Both stream one tensor at a time (the scan even reads big tensors in row chunks), so a model
never has to fit in memory at once.

GPTQ layout (as written by AutoGPTQ / GPTQModel / optimum and read by vLLM's GPTQ kernels):

* ``qweight``  int32 [in_features / pf, out_features]: pf = 32 / bits codes per word, packed
  along the INPUT dim, code of input row ``r*pf + j`` at bits ``[bits*j, bits*j + bits)``.
* ``qzeros``   int32 [groups, out_features / pf]: zero points packed the same way along the
  OUTPUT dim. Format ``gptq`` (v1, the default) stores ``zero - 1`` (the historical AutoGPTQ
  off-by-one; readers add 1, as vLLM's kernels and GPTQModel's v1->v2 conversion do);
  ``gptq_v2`` stores the zero itself.
* ``scales``   fp16 [groups, out_features].
* ``g_idx``    int32 [in_features]: group of each input channel. ``i // group_size`` without
  act-order; an arbitrary assignment with act-order (``desc_act``), which is why it must be used
  rather than recomputed.

Dequantized weight (nn.Linear layout [out, in]):
``W[o, i] = scales[g_idx[i], o] * (code[i, o] - zero[g_idx[i], o])``.
Symmetric checkpoints store zero = 2**(bits-1) (v1: 2**(bits-1) - 1); when no ``qzeros`` exist the
symmetric zero is used. 2-, 4- and 8-bit are supported; 3-bit packs across words and is refused
with a clear error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

SUPPORTED_BITS = (2, 4, 8)
SUPPORTED_FORMATS = ("gptq", "gptq_v2")
OUT_DTYPES = ("float16", "bfloat16", "float32")
_GPTQ_PARTS = ("qweight", "qzeros", "scales", "g_idx")
_WORD_BITS = {"I8": 8, "I16": 16, "I32": 32, "I64": 64}


class WeightsError(ValueError):
    """A checkpoint cannot be read or converted; the message says what and what is allowed."""


# --------------------------------------------------------------------------- files


def safetensors_files(model_dir: str | Path) -> list[Path]:
    """The checkpoint's safetensors files (sharded via the index, or all *.safetensors)."""
    d = Path(model_dir)
    if not d.is_dir():
        raise WeightsError(f"{d}: not a directory (expected a model folder with *.safetensors)")
    index = d / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [d / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise WeightsError(f"{index}: lists shard(s) that do not exist: {', '.join(missing[:3])}")
        return files
    files = sorted(d.glob("*.safetensors"))
    if not files:
        other = sorted(p.name for p in d.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
        hint = f" (found {', '.join(other[:3])}; only safetensors is supported)" if other else ""
        raise WeightsError(f"{d}: no *.safetensors files{hint}")
    return files


def _tensor_index(files: Sequence[Path]) -> dict[str, Path]:
    from safetensors import safe_open

    where: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for name in h.keys():
                where[name] = f
    return where


# --------------------------------------------------------------------------- scan


@dataclass
class TensorStats:
    name: str
    file: str
    dtype: str
    shape: list[int]
    numel: int
    nan_count: int | None = None
    inf_count: int | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    abs_max: float | None = None
    l2_norm: float | None = None
    max_abs_z: float | None = None  # max |x - mean| / std: how far the most extreme element sits
    flags: list[str] = field(default_factory=list)


class _Running:
    """Streaming count/mean/M2 (Chan et al. parallel update) plus min/max/nan/inf/sumsq."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.nan = 0
        self.inf = 0
        self.sumsq = 0.0

    def add(self, chunk: Any) -> None:
        import torch

        x = chunk.detach().reshape(-1).to(torch.float64)
        finite = torch.isfinite(x)
        self.nan += int(torch.isnan(x).sum())
        self.inf += int(torch.isinf(x).sum())
        x = x[finite]
        n = x.numel()
        if not n:
            return
        m = float(x.mean())
        m2 = float(((x - m) ** 2).sum())
        delta = m - self.mean
        tot = self.n + n
        self.mean += delta * n / tot
        self.m2 += m2 + delta * delta * self.n * n / tot
        self.n = tot
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.sumsq += float((x * x).sum())


def _iter_chunks(handle: Any, name: str, chunk_elems: int) -> Iterator[Any]:
    """Yield a tensor in row blocks of about chunk_elems elements (bounded memory)."""
    sl = handle.get_slice(name)
    shape = sl.get_shape()
    if len(shape) == 0:
        yield handle.get_tensor(name)
        return
    row = max(1, math.prod(shape[1:]))
    step = max(1, chunk_elems // row)
    for r0 in range(0, shape[0], step):
        yield sl[r0:r0 + step]


def _peer_key(name: str) -> str:
    """Tensors that play the same role in every layer share a key: layer numbers -> '*'."""
    return re.sub(r"\.\d+\.", ".*.", name)


@dataclass
class ScanResult:
    model_dir: str
    tensors: list[TensorStats]
    z_threshold: float
    peer_ratio: float

    @property
    def flagged(self) -> list[TensorStats]:
        return [t for t in self.tensors if t.flags]

    def summary(self) -> dict[str, Any]:
        floats = [t for t in self.tensors if t.nan_count is not None]
        return {
            "num_tensors": len(self.tensors),
            "num_float_tensors": len(floats),
            "num_parameters": sum(t.numel for t in self.tensors),
            "num_nan_values": sum(t.nan_count or 0 for t in floats),
            "num_inf_values": sum(t.inf_count or 0 for t in floats),
            "num_flagged_tensors": len(self.flagged),
            "flagged": {t.name: t.flags for t in self.flagged},
            "z_threshold": self.z_threshold,
            "peer_ratio": self.peer_ratio,
        }

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.tensors]

    def table(self, only_flagged: bool = False) -> Any:
        import pandas as pd

        rows = [asdict(t) for t in (self.flagged if only_flagged else self.tensors)]
        df = pd.DataFrame(rows, columns=list(TensorStats.__dataclass_fields__))
        df["flags"] = df["flags"].map(lambda f: "; ".join(f))
        return df.drop(columns=["file"])


def scan_weights(model_dir: str | Path, z_threshold: float = 64.0, peer_ratio: float = 8.0,
                 chunk_elems: int = 1 << 24) -> ScanResult:
    """NaN/Inf count and min/max/mean/std/abs-max/L2 per tensor, streaming, plus flags.

    Flags (for inspection; a flag is not a verdict):
      * ``nan``/``inf``: any non-finite value.
      * ``outlier z=...``: an element further than ``z_threshold`` standard deviations from the
        tensor mean (random-init weights reach ~5; trained LLMs have a few legitimate outlier
        weights, hence a generous default).
      * ``std/abs_max Nx peers``: a tensor whose std or abs-max is more than ``peer_ratio`` times
        off the median of the same tensor in the other layers (needs >= 3 peers): a corrupted
        or mis-scaled layer stands out against its siblings.
      * ``constant matrix``: a >= 2-D float tensor with std 0 (1-D norms may legitimately be 1.0).
    Packed integer tensors (GPTQ qweight/qzeros/g_idx) get dtype and shape only.
    """
    import torch
    from safetensors import safe_open

    files = safetensors_files(model_dir)
    stats: list[TensorStats] = []
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for name in sorted(h.keys()):
                sl = h.get_slice(name)
                shape = list(sl.get_shape())
                dtype = sl.get_dtype()
                st = TensorStats(name=name, file=f.name, dtype=dtype, shape=shape, numel=math.prod(shape))
                if dtype in ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"):
                    run = _Running()
                    for chunk in _iter_chunks(h, name, chunk_elems):
                        run.add(chunk)
                    st.nan_count, st.inf_count = run.nan, run.inf
                    if run.n:
                        st.min, st.max, st.mean = run.min, run.max, run.mean
                        st.std = math.sqrt(run.m2 / run.n)
                        st.abs_max = max(abs(run.min), abs(run.max))
                        st.l2_norm = math.sqrt(run.sumsq)
                        if st.std > 0:
                            st.max_abs_z = max(run.max - run.mean, run.mean - run.min) / st.std
                    if st.nan_count:
                        st.flags.append(f"nan x{st.nan_count}")
                    if st.inf_count:
                        st.flags.append(f"inf x{st.inf_count}")
                    if st.max_abs_z is not None and st.max_abs_z > z_threshold:
                        st.flags.append(f"outlier z={st.max_abs_z:.0f}")
                    if len(shape) >= 2 and st.std == 0.0 and st.numel > 1:
                        st.flags.append("constant matrix")
                stats.append(st)
    del torch
    # peer comparison: same role across layers
    groups: dict[str, list[TensorStats]] = defaultdict(list)
    for st in stats:
        if st.std is not None:
            groups[_peer_key(st.name)].append(st)
    for members in groups.values():
        if len(members) < 4:  # the tensor itself + >= 3 peers
            continue
        for attr in ("std", "abs_max"):
            vals = sorted(getattr(m, attr) for m in members)
            med = vals[len(vals) // 2]
            if med <= 0:
                continue
            for m in members:
                ratio = getattr(m, attr) / med
                if ratio > peer_ratio or (ratio > 0 and ratio < 1 / peer_ratio):
                    m.flags.append(f"{attr} {ratio:.3g}x peers")
    return ScanResult(model_dir=str(model_dir), tensors=stats, z_threshold=z_threshold, peer_ratio=peer_ratio)


# --------------------------------------------------------------------------- GPTQ config


@dataclass
class GPTQConfig:
    bits: int
    group_size: int  # -1: one group over all input channels
    sym: bool
    desc_act: bool
    format: str  # gptq (v1 zeros, stored zero-1) | gptq_v2
    source: str  # which file the config came from
    dynamic: dict[str, dict[str, Any]] = field(default_factory=dict)
    lm_head: bool = False

    def for_module(self, prefix: str) -> dict[str, Any]:
        """bits/group_size/sym for one module, after GPTQModel `dynamic` per-module overrides
        ("+:regex" or "regex" override, "-:regex" excludes - such modules have no qweight)."""
        params = {"bits": self.bits, "group_size": self.group_size, "sym": self.sym}
        for pattern, override in (self.dynamic or {}).items():
            if pattern.startswith("-:"):
                continue
            rx = pattern[2:] if pattern.startswith("+:") else pattern
            if re.match(rx, prefix) and isinstance(override, dict):
                params.update({k: override[k] for k in ("bits", "group_size", "sym") if k in override})
        return params


def read_gptq_config(model_dir: str | Path) -> GPTQConfig | None:
    """GPTQ settings from quantize_config.json or config.json["quantization_config"]; None when
    the checkpoint carries neither (not quantized). Other quant methods raise."""
    d = Path(model_dir)
    raw: dict[str, Any] | None = None
    source = ""
    cfg_file = d / "config.json"
    if cfg_file.is_file():
        qc = json.loads(cfg_file.read_text()).get("quantization_config")
        if qc:
            raw, source = qc, str(cfg_file) + ":quantization_config"
    if raw is None and (d / "quantize_config.json").is_file():
        raw, source = json.loads((d / "quantize_config.json").read_text()), str(d / "quantize_config.json")
    if raw is None:
        return None
    method = str(raw.get("quant_method", "gptq")).lower()
    if method != "gptq":
        raise WeightsError(f"{source}: quant_method {method!r} is not supported; allowed: gptq")
    fmt = str(raw.get("checkpoint_format") or raw.get("format") or "gptq").lower()
    if fmt not in SUPPORTED_FORMATS:
        raise WeightsError(f"{source}: checkpoint format {fmt!r} is not supported; allowed: {', '.join(SUPPORTED_FORMATS)}")
    try:
        bits = int(raw["bits"])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{source}: 'bits' missing or not an integer") from None
    if bits not in SUPPORTED_BITS:
        raise WeightsError(f"{source}: bits={bits} is not supported; allowed: {', '.join(map(str, SUPPORTED_BITS))}")
    gs = int(raw.get("group_size", -1))
    if gs != -1 and gs <= 0:
        raise WeightsError(f"{source}: group_size={gs}; allowed: -1 or a positive integer")
    return GPTQConfig(bits=bits, group_size=gs, sym=bool(raw.get("sym", True)), desc_act=bool(raw.get("desc_act", False)),
                      format=fmt, source=source, dynamic=raw.get("dynamic") or {}, lm_head=bool(raw.get("lm_head", False)))


# --------------------------------------------------------------------------- GPTQ unpack / dequant


def unpack_rows(packed: Any, bits: int) -> Any:
    """[R, N] packed words -> [R * pf, N] codes (packing along dim 0, the GPTQ qweight layout)."""
    import torch

    word = packed.element_size() * 8
    pf = word // bits
    shifts = (torch.arange(pf, dtype=torch.int64) * bits).view(1, pf, 1)
    # int64 first: sign extension of negative words is harmless since only bits < word are kept
    codes = (packed.to(torch.int64).unsqueeze(1) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(packed.shape[0] * pf, packed.shape[1])


def unpack_cols(packed: Any, bits: int) -> Any:
    """[R, N] packed words -> [R, N * pf] codes (packing along dim 1, the GPTQ qzeros layout)."""
    import torch

    word = packed.element_size() * 8
    pf = word // bits
    shifts = (torch.arange(pf, dtype=torch.int64) * bits).view(1, 1, pf)
    codes = (packed.to(torch.int64).unsqueeze(2) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(packed.shape[0], packed.shape[1] * pf)


def pack_rows(codes: Any, bits: int) -> Any:
    """Inverse of unpack_rows into int32 words (used by tests / tools that write GPTQ files)."""
    import torch

    pf = 32 // bits
    if codes.shape[0] % pf:
        raise WeightsError(f"rows {codes.shape[0]} not divisible by {pf} codes per int32 word")
    c = codes.to(torch.int64).reshape(codes.shape[0] // pf, pf, codes.shape[1])
    shifts = (torch.arange(pf, dtype=torch.int64) * bits).view(1, pf, 1)
    words = (c << shifts).sum(1)
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


def pack_cols(codes: Any, bits: int) -> Any:
    """Inverse of unpack_cols into int32 words."""
    return pack_rows(codes.T.contiguous(), bits).T.contiguous()


def dequantize_gptq(qweight: Any, scales: Any, qzeros: Any | None, g_idx: Any | None, bits: int, group_size: int,
                    sym: bool = True, fmt: str = "gptq", out_dtype: Any = None, block_rows: int = 4096) -> Any:
    """One GPTQ linear -> float weight [out_features, in_features] (nn.Linear layout).

    Computed in float32 in blocks of ``block_rows`` input channels (bounded temporaries), then
    cast to ``out_dtype`` (default float16).
    """
    import torch

    out_dtype = out_dtype or torch.float16
    if bits not in SUPPORTED_BITS:
        raise WeightsError(f"bits={bits} not supported; allowed: {SUPPORTED_BITS}")
    word = qweight.element_size() * 8
    pf = word // bits
    in_features = qweight.shape[0] * pf
    out_features = qweight.shape[1]
    groups = scales.shape[0]
    if scales.shape[1] != out_features:
        raise WeightsError(f"scales shape {tuple(scales.shape)} does not match qweight out_features {out_features}")
    if g_idx is None:
        gs = in_features if group_size == -1 else group_size
        g_idx = torch.arange(in_features, dtype=torch.int64) // gs
    g_idx = g_idx.to(torch.int64)
    if g_idx.numel() != in_features:
        raise WeightsError(f"g_idx has {g_idx.numel()} entries but qweight unpacks to {in_features} input channels "
                           f"at {bits} bits: bits in the config do not match the tensors")
    if int(g_idx.min()) < 0 or int(g_idx.max()) >= groups:
        raise WeightsError(f"g_idx values must be in [0, {groups}); got [{int(g_idx.min())}, {int(g_idx.max())}]")
    if qzeros is not None:
        zeros = unpack_cols(qzeros, bits)[:, :out_features].to(torch.float32)
        if zeros.shape[0] != groups:
            raise WeightsError(f"qzeros has {zeros.shape[0]} groups, scales has {groups}")
        if fmt == "gptq":
            zeros = zeros + 1  # v1 stores zero - 1 (AutoGPTQ convention, undone by every reader)
    else:
        if not sym:
            raise WeightsError("asymmetric GPTQ module without qzeros: cannot dequantize")
        zeros = torch.full((groups, out_features), float(1 << (bits - 1)))
    scales32 = scales.to(torch.float32)
    out = torch.empty((out_features, in_features), dtype=out_dtype)
    step = max(pf, (block_rows // pf) * pf)
    for r0 in range(0, in_features, step):
        r1 = min(in_features, r0 + step)
        codes = unpack_rows(qweight[r0 // pf: r1 // pf], bits).to(torch.float32)  # [r, out]
        g = g_idx[r0:r1]
        w = scales32[g] * (codes - zeros[g])  # [r, out]
        out[:, r0:r1] = w.T.to(out_dtype)
    return out


def requantize_codes(weight: Any, scales: Any, qzeros: Any | None, g_idx: Any | None, bits: int, group_size: int,
                     sym: bool = True, fmt: str = "gptq") -> Any:
    """Map a dequantized [out, in] weight back onto the stored grid: round(W / s + z). Equal to
    the stored codes exactly when the float dtype could hold every dequantized value closely
    enough (true for fp16; bf16 has 8 mantissa bits and can miss for 8-bit codes far from zero)."""
    import torch

    in_features = weight.shape[1]
    if g_idx is None:
        gs = in_features if group_size == -1 else group_size
        g_idx = torch.arange(in_features) // gs
    g = g_idx.to(torch.int64)
    if qzeros is not None:
        zeros = unpack_cols(qzeros, bits)[:, : weight.shape[0]].to(torch.float32) + (1 if fmt == "gptq" else 0)
    else:
        zeros = torch.full((scales.shape[0], weight.shape[0]), float(1 << (bits - 1)))
    w = weight.to(torch.float32).T  # [in, out]
    return torch.round(w / scales.to(torch.float32)[g] + zeros[g]).clamp(0, (1 << bits) - 1).to(torch.int64)


# --------------------------------------------------------------------------- checkpoint conversion


@dataclass
class DequantReport:
    src: str
    dst: str
    dtype: str
    bits: int
    group_size: int
    sym: bool
    desc_act: bool
    format: str
    config_source: str
    num_quantized_modules: int
    num_act_order_modules: int  # modules whose g_idx is not the plain i // group_size
    num_tensors_written: int
    num_shards: int
    bytes_written: int
    code_min: int | None
    code_max: int | None
    scale_min: float | None
    scale_max: float | None
    scale_mean: float | None
    requant_exact_fraction: float | None  # fraction of weights whose code round-trips exactly
    sym_zero_mismatch_modules: int  # sym=True but stored zeros differ from 2**(bits-1)
    modules: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("modules")
        return d


class _ShardWriter:
    """Accumulate tensors and flush shards of at most max_bytes; name them at the end."""

    def __init__(self, dst: Path, max_bytes: int):
        self.dst, self.max_bytes = dst, max_bytes
        self.buf: dict[str, Any] = {}
        self.buf_bytes = 0
        self.tmp_files: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0
        self.count = 0

    def add(self, name: str, tensor: Any) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self.buf and self.buf_bytes + nbytes > self.max_bytes:
            self.flush()
        self.buf[name] = tensor.contiguous()
        self.buf_bytes += nbytes
        self.total_bytes += nbytes
        self.count += 1

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.buf:
            return
        path = self.dst / f".shard-{len(self.tmp_files):05d}.tmp"
        save_file(self.buf, str(path), metadata={"format": "pt"})
        self.tmp_files.append((path, list(self.buf)))
        self.buf, self.buf_bytes = {}, 0

    def finish(self) -> int:
        self.flush()
        n = len(self.tmp_files)
        if n == 1:
            self.tmp_files[0][0].rename(self.dst / "model.safetensors")
            return 1
        weight_map: dict[str, str] = {}
        for i, (path, names) in enumerate(self.tmp_files):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            path.rename(self.dst / final)
            weight_map.update({nm: final for nm in names})
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (self.dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        return n


def dequantize_checkpoint(src: str | Path, dst: str | Path, dtype: str = "float16",
                          max_shard_bytes: int = 2 << 30, overwrite: bool = False) -> DequantReport:
    """Write a plain (unquantized) safetensors model at ``dst`` from the GPTQ checkpoint ``src``.

    Every ``<prefix>.qweight/qzeros/scales/g_idx`` group becomes ``<prefix>.weight`` in ``dtype``;
    other float tensors are cast to ``dtype``; config.json loses ``quantization_config`` and gets
    the new dtype; tokenizer and other side files are copied. Streams module by module.
    """
    import torch
    from safetensors import safe_open

    if dtype not in OUT_DTYPES:
        raise WeightsError(f"dtype {dtype!r} not allowed; allowed: {', '.join(OUT_DTYPES)}")
    src, dst = Path(src), Path(dst)
    qcfg = read_gptq_config(src)
    if qcfg is None:
        raise WeightsError(f"{src}: no GPTQ quantization config (quantize_config.json or config.json "
                           "quantization_config): nothing to dequantize")
    files = safetensors_files(src)
    where = _tensor_index(files)
    prefixes = sorted(n[: -len(".qweight")] for n in where if n.endswith(".qweight"))
    if not prefixes:
        raise WeightsError(f"{src}: config says GPTQ but no '*.qweight' tensors were found")
    if dst.exists():
        if not overwrite and any(dst.iterdir()):
            raise WeightsError(f"{dst}: exists and is not empty (pass overwrite=True / --overwrite)")
    dst.mkdir(parents=True, exist_ok=True)
    for old in list(dst.glob("*.safetensors")) + list(dst.glob(".shard-*.tmp")):
        old.unlink()
    out_dtype = getattr(torch, dtype)
    writer = _ShardWriter(dst, max_shard_bytes)
    handles: dict[Path, Any] = {}

    def get(name: str) -> Any:
        f = where[name]
        if f not in handles:
            handles[f] = safe_open(str(f), framework="pt").__enter__()
        return handles[f].get_tensor(name)

    quant_parts = {f"{p}.{part}" for p in prefixes for part in _GPTQ_PARTS}
    modules: list[dict[str, Any]] = []
    code_min = code_max = None
    smin, smax, ssum, scount = math.inf, -math.inf, 0.0, 0
    exact = total = 0
    act_order = sym_mismatch = 0
    try:
        for name in sorted(where, key=lambda n: (str(where[n]), n)):
            if name in quant_parts:
                if not name.endswith(".qweight"):
                    continue
                prefix = name[: -len(".qweight")]
                mp = qcfg.for_module(prefix)
                qweight = get(name)
                scales = get(f"{prefix}.scales")
                qzeros = get(f"{prefix}.qzeros") if f"{prefix}.qzeros" in where else None
                g_idx = get(f"{prefix}.g_idx") if f"{prefix}.g_idx" in where else None
                bits = mp["bits"]
                if g_idx is not None:  # shapes decide: catches a config whose bits disagree with the file
                    word = qweight.element_size() * 8
                    if g_idx.numel() != qweight.shape[0] * (word // bits):
                        raise WeightsError(f"{prefix}: g_idx has {g_idx.numel()} input channels, qweight "
                                           f"{tuple(qweight.shape)} unpacks to {qweight.shape[0] * (word // bits)} "
                                           f"at bits={bits} ({qcfg.source})")
                w = dequantize_gptq(qweight, scales, qzeros, g_idx, bits, mp["group_size"], mp["sym"], qcfg.format,
                                    out_dtype)
                codes = unpack_rows(qweight, bits)
                back = requantize_codes(w, scales, qzeros, g_idx, bits, mp["group_size"], mp["sym"], qcfg.format)
                exact += int((back == codes).sum())
                total += codes.numel()
                cmin, cmax = int(codes.min()), int(codes.max())
                code_min = cmin if code_min is None else min(code_min, cmin)
                code_max = cmax if code_max is None else max(code_max, cmax)
                s32 = scales.to(torch.float32)
                smin, smax = min(smin, float(s32.min())), max(smax, float(s32.max()))
                ssum += float(s32.sum())
                scount += s32.numel()
                in_features = w.shape[1]
                gs = in_features if mp["group_size"] == -1 else mp["group_size"]
                plain = torch.arange(in_features) // gs
                is_act = g_idx is not None and not torch.equal(g_idx.to(torch.int64), plain)
                act_order += int(is_act)
                if mp["sym"] and qzeros is not None:
                    z = unpack_cols(qzeros, bits) + (1 if qcfg.format == "gptq" else 0)
                    sym_mismatch += int(bool((z[:, : w.shape[0]] != (1 << (bits - 1))).any()))
                w32 = w.to(torch.float32)
                modules.append({"module": prefix, "bits": bits, "group_size": mp["group_size"],
                                "shape": list(w.shape), "act_order": is_act,
                                "weight_mean": float(w32.mean()), "weight_std": float(w32.std()),
                                "weight_min": float(w32.min()), "weight_max": float(w32.max())})
                writer.add(f"{prefix}.weight", w)
                del w, w32, codes, back
            else:
                t = get(name)
                writer.add(name, t.to(out_dtype) if t.is_floating_point() else t)
        n_shards = writer.finish()
    finally:
        for h in handles.values():
            h.__exit__(None, None, None)
    _copy_side_files(src, dst, dtype)
    return DequantReport(
        src=str(src), dst=str(dst), dtype=dtype, bits=qcfg.bits, group_size=qcfg.group_size, sym=qcfg.sym,
        desc_act=qcfg.desc_act, format=qcfg.format, config_source=qcfg.source,
        num_quantized_modules=len(prefixes), num_act_order_modules=act_order, num_tensors_written=writer.count,
        num_shards=n_shards, bytes_written=writer.total_bytes, code_min=code_min, code_max=code_max,
        scale_min=smin if scount else None, scale_max=smax if scount else None,
        scale_mean=ssum / scount if scount else None,
        requant_exact_fraction=exact / total if total else None, sym_zero_mismatch_modules=sym_mismatch,
        modules=modules,
    )


def _copy_side_files(src: Path, dst: Path, dtype: str) -> None:
    skip = {"quantize_config.json", "model.safetensors.index.json", "config.json"}
    for p in src.iterdir():
        if p.is_file() and p.name not in skip and p.suffix != ".safetensors":
            shutil.copy2(p, dst / p.name)
    cfg_path = src / "config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("quantization_config", None)
        cfg["torch_dtype"] = dtype
        if "dtype" in cfg:
            cfg["dtype"] = dtype
        (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


# --------------------------------------------------------------------------- CLI hooks


def scan_weights_cli(argv: Sequence[str] | None = None) -> int:
    """`ascendeval weights scan DIR`: print flagged tensors and a summary. Exit 1 when any NaN/Inf
    or flag was found, 0 when clean, 2 on bad input."""
    ap = argparse.ArgumentParser(prog="ascendeval weights scan", description=scan_weights.__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--z-threshold", type=float, default=64.0, help="flag elements this many std from the mean")
    ap.add_argument("--peer-ratio", type=float, default=8.0, help="flag tensors this many times off their peers")
    ap.add_argument("--json", dest="json_out", help="write all per-tensor statistics to this JSON file")
    ap.add_argument("--all", action="store_true", help="print every tensor, not only flagged ones")
    args = ap.parse_args(argv)
    from .preflight import PreflightError, check_weights

    try:
        if Path(args.model_dir).is_dir():  # a truncated or corrupt file is named before any tensor is read
            check_weights(Path(args.model_dir))
        res = scan_weights(args.model_dir, z_threshold=args.z_threshold, peer_ratio=args.peer_ratio)
    except (WeightsError, PreflightError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_colwidth", 60):
        df = res.table(only_flagged=not args.all)
        print(df.to_string(index=False) if len(df) else "no tensor flagged")
    s = res.summary()
    print(f"{s['num_tensors']} tensors, {s['num_parameters']:,} values, NaN {s['num_nan_values']}, "
          f"Inf {s['num_inf_values']}, flagged {s['num_flagged_tensors']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": s, "tensors": res.rows()}, indent=1) + "\n")
    return 1 if s["num_flagged_tensors"] or s["num_nan_values"] or s["num_inf_values"] else 0


def dequantize_cli(argv: Sequence[str] | None = None) -> int:
    """`ascendeval weights dequant SRC DST`: GPTQ checkpoint -> plain safetensors model."""
    ap = argparse.ArgumentParser(prog="ascendeval weights dequant",
                                 description="Dequantize a GPTQ (int2/int4/int8) safetensors checkpoint.")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--dtype", choices=OUT_DTYPES, default="float16")
    ap.add_argument("--max-shard-gib", type=float, default=2.0)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--json", dest="json_out", help="write the conversion report (with per-module stats) here")
    args = ap.parse_args(argv)
    try:
        rep = dequantize_checkpoint(args.src, args.dst, dtype=args.dtype,
                                    max_shard_bytes=int(args.max_shard_gib * (1 << 30)), overwrite=args.overwrite)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for k, v in rep.summary().items():
        print(f"{k:28s} {v}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(asdict(rep), indent=1) + "\n")
    return 0
