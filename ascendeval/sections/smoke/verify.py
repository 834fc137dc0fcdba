"""The smoke section's verify rule: recompute its summaries from its raw rows (`ascendeval verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rechecks import (
    VerifyResult,
    check_generation_row,
    mean,
    records_param,
    sidecar_rows,
)


def rule(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    max_tokens = records_param(rec, "smoke", "max_tokens")
    rows = sidecar_rows(run_dir, "smoke", "prompts", res)
    for i, r in enumerate(rows):
        check_generation_row(res, f"smoke.prompts.jsonl[{i}]", r, max_tokens)
    s = m.get("prompts")
    if rows and isinstance(s, dict):
        lat = [r["latency_s"] for r in rows]
        res.same("smoke.prompts.count", s.get("count"), len(rows))
        res.same("smoke.prompts.mean_latency_s", s.get("mean_latency_s"), sum(lat) / len(lat))
        res.same("smoke.prompts.max_latency_s", s.get("max_latency_s"), max(lat))
        res.same("smoke.prompts.min_latency_s", s.get("min_latency_s"), min(lat))
        res.same("smoke.prompts.empty_outputs", s.get("empty_outputs"),
                 sum(1 for r in rows if not str(r.get("output", "")).strip()))
    served = sidecar_rows(run_dir, "smoke", "served", res)
    for i, r in enumerate(served):
        check_generation_row(res, f"smoke.served.jsonl[{i}]", r, max_tokens)
    s = m.get("served")
    if served and isinstance(s, dict):
        res.same("smoke.served.requests", s.get("requests"), len(served))
        res.same("smoke.served.mean_latency_s", s.get("mean_latency_s"), mean(r["latency_s"] for r in served))
        ttfts = [r["ttft_ms"] for r in served if r.get("ttft_ms") is not None]
        res.same("smoke.served.mean_ttft_ms", s.get("mean_ttft_ms"), mean(ttfts))
        cmp_ = [bool(r["same_as_offline"]) for r in served if "same_as_offline" in r]
        res.same("smoke.served.same_as_offline_rate", s.get("same_as_offline_rate"),
                 (sum(cmp_) / len(cmp_)) if cmp_ else None)

