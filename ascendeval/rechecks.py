"""What a section's verify rule works with: the result that counts checks and collects problems,
tolerant comparison of a recorded value with the one recomputed from raw rows, and readers of the
sidecar rows. A leaf module (only records), so each section package can hold its own rule while
verify.py loops over the registry."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import records

REL_TOL = 1e-6


ABS_TOL = 1e-9


@dataclass
class VerifyResult:
    run_dir: Path
    checks: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def same(self, where: str, recorded: Any, recomputed: Any, rel: float = REL_TOL, abs_: float = ABS_TOL) -> None:
        """Compare a recorded value with the one recomputed from raw rows."""
        self.checks += 1
        if recorded is None and recomputed is None:
            return
        if isinstance(recomputed, bool) or isinstance(recorded, bool) or not (
                isinstance(recorded, (int, float)) and isinstance(recomputed, (int, float))):
            if recorded != recomputed:
                self.problem(where, f"recorded {recorded!r} but the raw rows give {recomputed!r}")
            return
        if not math.isclose(float(recorded), float(recomputed), rel_tol=rel, abs_tol=abs_):
            self.problem(where, f"recorded {recorded!r} but the raw rows give {recomputed!r}")

    def summary(self) -> str:
        head = f"verify {self.run_dir}: {self.checks} checks, {len(self.problems)} problem(s)"
        return "\n".join([head] + [f"  - {p}" for p in self.problems]) + ("" if self.problems else "\nOK")


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mean(vals: Iterable[float]) -> float | None:
    v = [float(x) for x in vals]
    return float(np.mean(v)) if v else None


def pct(vals: list[float], p: float) -> float | None:
    return float(np.percentile(np.asarray(vals, dtype=float), p)) if vals else None


def sidecar_rows(run_dir: Path, section: str, kind: str, res: VerifyResult) -> list[dict[str, Any]]:
    path = records.records_dir(run_dir) / f"{section}.{kind}.jsonl"
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            res.problem(f"{path.name}:{i}", f"not valid JSON ({exc.msg})")
    return out


def check_generation_row(res: VerifyResult, where: str, r: dict[str, Any], max_tokens: int | None) -> None:
    """Token counts vs token ids and max_tokens; tok/s vs tokens and latency."""
    n, ids = r.get("output_tokens"), r.get("token_ids")
    res.checks += 1
    if isinstance(ids, list) and ids and is_num(n) and n != len(ids):
        res.problem(where, f"output_tokens {n} but {len(ids)} token ids")
    if max_tokens is not None and is_num(n) and n > max_tokens:
        res.problem(where, f"output_tokens {n} > max_tokens {max_tokens}")
    lat, tps = r.get("latency_s"), r.get("tok_per_s")
    if is_num(n) and is_num(lat) and lat > 0 and is_num(tps):
        res.same(f"{where}.tok_per_s", tps, n / lat, rel=1e-6)


def records_param(rec: dict[str, Any], section: str, key: str) -> Any:
    return ((rec.get("params") or {}).get(section) or {}).get(key)


def get_path(d: Any, keys: list[Any]) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def guard_rule(res: VerifyResult, section: str, guard: Any) -> None:
    """Each output-guard result against its own numbers: a `valid` figure has no non-finite
    output and no request vLLM flagged, checked tokens behind it, a sampled excess within reason
    and counts that add up; an `invalid` one says why. (Every section whose figures the guard checks calls it.)"""
    if not isinstance(guard, dict):
        return
    for name, g in guard.items():
        where = f"{section}.output_guard[{name}]"
        if not isinstance(g, dict):
            res.problem(where, "not a guard result")
            continue
        res.checks += 1
        n, empty, checked = g.get("num_requests"), g.get("num_empty"), g.get("num_tokens_checked")
        if is_num(n) and is_num(empty) and empty > n:
            res.problem(where, f"num_empty {empty} > num_requests {n}")
        if is_num(g.get("num_samples")) and is_num(n) and g["num_samples"] > n:
            res.problem(where, f"num_samples {g['num_samples']} > num_requests {n}")
        agree = g.get("ref_top1_agreement")
        if agree is not None and not (is_num(agree) and 0 <= agree <= 1):
            res.problem(where, f"ref_top1_agreement {agree} outside [0, 1]")
        status = g.get("status")
        if status == "valid":
            if g.get("num_nonfinite") or g.get("corrupted_requests"):
                res.problem(where, "valid, yet outputs with non-finite logprobs / NaN logits are counted")
            if not checked:
                res.problem(where, "valid, yet no token was checked against the reference")
            if g.get("sampled") and g.get("excess_nll_nats") is None:
                res.problem(where, "valid sampled figure without its excess NLL")
        elif status == "invalid":
            if not g.get("reason"):
                res.problem(where, "invalid without a reason")
        elif status != "unchecked":
            res.problem(where, f"unknown status {status!r}")
