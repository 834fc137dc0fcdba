"""The roofline: the prefill / decode rates measured here against the environment's probes (and
the device's datasheet), as achieved FLOP/s and bandwidth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ... import metrics, records
from ...context import SectionRun, SectionSkipped
from .offline import SplitResult
from .setup import Plan


def _find_number(obj: Any, names: tuple[str, ...]) -> float | None:
    """First numeric value under any of `names`, searched depth-first in a record's metrics."""
    if isinstance(obj, dict):
        for n in names:
            v = obj.get(n)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
        for v in obj.values():
            found = _find_number(v, names)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find_number(v, names)
            if found is not None:
                return found
    return None


@dataclass
class RooflineResult:
    values: dict[str, Any]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.values.items()), columns=["item", "value"]).set_index("item")


def roofline(run: SectionRun, p: Plan, split: SplitResult | None) -> RooflineResult:
    """Decode model-bandwidth utilisation and prefill model-FLOPs utilisation (formulas in
    metrics.decode_bandwidth_utilization / prefill_flops_utilization), against the bandwidth
    and matmul throughput measured by the environment section."""
    split = run.needs("prefill_decode", split)
    if not split.rows:
        raise RuntimeError("the prefill/decode step measured no batch size: nothing to compare")
    env = records.load(run.run_dir, "environment")
    if env is None:
        raise SectionSkipped("no records/environment.json in this run: run the environment section first",
                             zh="本次运行中没有 records/environment.json：请先运行 environment 章节")
    m = env.get("metrics", {})
    # The environment section's flat `roofline` block first (env.roofline_inputs), then anywhere in
    # its metrics. Decode streams the weights: the read bandwidth is its roof, copy is the fallback.
    src = [m.get("roofline") or {}, m]
    bw_key = next((k for k in ("read_bandwidth_gbps", "copy_bandwidth_gbps") if _find_number(src, (k,))), None)
    bw_gbps = _find_number(src, (bw_key,)) if bw_key else None
    dt = str(p.model_facts.get("run_dtype", "float32"))
    mm_key = {"bfloat16": "matmul_bf16_tflops", "float16": "matmul_fp16_tflops"}.get(dt, "matmul_fp32_tflops")
    if not _find_number(src, (mm_key,)):
        mm_key = "matmul_fp32_tflops"  # no probe in the run dtype: the fp32 roof, and the key says so
    tflops = _find_number(src, (mm_key,))
    if bw_gbps is None and tflops is None:
        raise SectionSkipped("the environment record has no measured bandwidth or matmul throughput",
                             zh="environment 记录中没有实测的带宽或矩阵乘吞吐")
    f = p.model_facts
    if not f.get("weights_bytes") or not f.get("param_count"):
        raise RuntimeError("parameter count unknown (no safetensors checkpoint found)")
    c = p.conf.split
    row = max(split.rows, key=lambda r: r["batch_size"])  # the largest batch is closest to a roof
    out: dict[str, Any] = {"batch_size": row["batch_size"], "measured_bandwidth_gbps": bw_gbps,
                           "bandwidth_key": bw_key, "measured_matmul_tflops": tflops, "matmul_dtype_key": mm_key}
    if bw_gbps and row.get("decode_tok_per_s"):
        d = metrics.decode_bandwidth_utilization(
            f["weights_bytes"], f.get("kv_bytes_per_token") or 0.0, row["batch_size"],
            c.decode_input_len + c.decode_output_len / 2, row["decode_tok_per_s"] / row["batch_size"], bw_gbps * 1e9)
        u = d["decode_bandwidth_utilization"]
        if u is not None and u > 1:
            # Bytes per step above DRAM bandwidth: the weights stay in cache between steps (small
            # models on CPUs), so the DRAM roof does not bound decode. Not a utilisation.
            d["decode_bandwidth_note"] = (f"achieved {d['decode_achieved_gbps']:.1f} GB/s exceeds the measured "
                                          f"{bw_gbps:.1f} GB/s: the working set fits in cache")
            d["decode_bandwidth_utilization"] = None
        out.update(d)
    if tflops:
        pf = metrics.prefill_flops_utilization(
            f["param_count"], f["num_layers"] or 0, f["hidden_size"] or 0, c.prefill_input_len,
            row["batch_size"], row["prefill_s"], tflops * 1e12)
        u = pf["prefill_flops_utilization"]
        if u is not None and u > 1:
            # The engine beat the probe: the probe's matmul (plain torch in this dtype) is not the
            # engine's kernel path (oneDNN/AMX, fused ops), so it is no roof here. Not a utilisation.
            pf["prefill_flops_note"] = (f"achieved {pf['prefill_achieved_tflops_per_s']:.4g} TFLOP/s exceeds the "
                                        f"measured {mm_key} {tflops:.4g}: the probe does not bound the engine's kernels")
            pf["prefill_flops_utilization"] = None
        out.update(pf)
    run.add("roofline", out)
    return RooflineResult(out)

