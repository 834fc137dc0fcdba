"""The precision section's verify rule: recompute its summaries from its raw rows (`ascendeval verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rechecks import VerifyResult, is_num, sidecar_rows


def rule(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    tf = m.get("teacher_forced")
    rows = sidecar_rows(run_dir, "precision", "positions", res)
    if rows and isinstance(tf, dict) and tf.get("scope"):
        from ...precision_metrics import summarize_positions

        recomputed = summarize_positions(rows, tf["scope"])
        for k, v in recomputed.items():
            if k in tf and k != "scope":
                res.same(f"precision.teacher_forced.{k}", tf[k], v)
    checks = (m.get("verdict") or {}).get("checks") if isinstance(m.get("verdict"), dict) else None
    from ...precision_metrics import check as verdict_check

    for c in checks or []:
        if not isinstance(c, dict) or c.get("op") not in (">=", "<=", "=="):
            res.problem(f"precision.verdict[{c.get('metric') if isinstance(c, dict) else c}]", "unknown comparison")
            continue
        got, thr = c.get("measured"), c.get("threshold")
        # the section's own rule recomputed: None when either side was not measured
        want = verdict_check(str(c.get("metric")), got if is_num(got) else None, c["op"], thr).passed if is_num(thr) else None
        res.same(f"precision.verdict[{c.get('metric')}].passed", c.get("passed"), want)
        metric = c.get("metric")
        if isinstance(tf, dict) and metric in tf and is_num(got):
            res.same(f"precision.verdict[{metric}].measured", got, tf[metric])
    if checks:
        # the section's own rule: false if any check failed, true if all measured ones passed
        states = [c.get("passed") for c in checks if isinstance(c, dict)]
        want_overall = False if False in states else (True if True in states else None)
        res.same("precision.verdict.passed", m["verdict"].get("passed"), want_overall)

