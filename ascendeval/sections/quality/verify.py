"""The quality section's verify rule: recompute its summaries from its raw rows (`ascendeval verify`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ...rechecks import VerifyResult, get_path, sidecar_rows


def rule(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    rows = sidecar_rows(run_dir, "quality", "suites", res)
    s = m.get("suites")
    if rows and isinstance(s, dict):
        res.same("quality.suites.num_items", s.get("num_items"), len(rows))
        by: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            by[r["suite"]].append(bool(r.get("passed")))
        for suite, vals in by.items():
            res.same(f"quality.suites.{suite}_pass_rate", s.get(f"{suite}_pass_rate"), sum(vals) / len(vals))
        res.same("quality.suites.overall_pass_rate", s.get("overall_pass_rate"),
                 sum(bool(r.get("passed")) for r in rows) / len(rows))
    items = sidecar_rows(run_dir, "quality", "items", res)
    bench = m.get("benchmarks")
    if items and isinstance(bench, dict):
        by2: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for r in items:
            by2[(r.get("benchmark"), r.get("method"))].append(bool(r.get("correct")))
        for (name, method), vals in by2.items():
            score = get_path(bench, [name, method])
            if isinstance(score, dict):
                res.same(f"quality.benchmarks.{name}.{method}.num_items", score.get("num_items"), len(vals))
                res.same(f"quality.benchmarks.{name}.{method}.accuracy", score.get("accuracy"), sum(vals) / len(vals))
            else:
                res.problem(f"quality.benchmarks.{name}.{method}", "rows exist but the record has no score")

