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
        fv = m.get("full_vocab")
        if metric == "mean_cosine_centered" and isinstance(fv, dict) and is_num(got):
            res.same("precision.verdict[mean_cosine_centered].measured", got, fv.get("mean_cosine_centered"))
    if checks:
        # the section's own rule: false if any check failed, true if all measured ones passed
        states = [c.get("passed") for c in checks if isinstance(c, dict)]
        want_overall = False if False in states else (True if True in states else None)
        res.same("precision.verdict.passed", m["verdict"].get("passed"), want_overall)

    _deployment(res, m.get("deployment"), run_dir)


def _deployment(res: VerifyResult, dep: Any, run_dir: Path) -> None:
    """Each arm's verdict from its own checks, and its prefill top-1 agreement with the baseline
    from the per-position rows."""
    if not isinstance(dep, dict):
        return
    from ...precision_metrics import check as verdict_check

    rows = sidecar_rows(run_dir, "precision", "deployment_positions", res)
    for arm in dep.get("arms") or []:
        if not isinstance(arm, dict) or arm.get("status") != "ok":
            continue
        name = arm.get("arm")
        for c in (arm.get("verdict") or {}).get("checks") or []:
            got, thr = c.get("measured"), c.get("threshold")
            want = verdict_check(str(c.get("metric")), got if is_num(got) else None, c.get("op"), thr).passed \
                if is_num(thr) and c.get("op") in (">=", "<=", "==") else None
            res.same(f"precision.deployment[{name}].verdict[{c.get('metric')}].passed", c.get("passed"), want)
            if c.get("metric") in arm and is_num(got):
                res.same(f"precision.deployment[{name}].verdict[{c.get('metric')}].measured", got, arm[c["metric"]])
        pre = [r for r in rows or [] if r.get("arm") == name and r.get("path") == "prefill"]
        if pre and is_num(arm.get("tf_top1_agreement_vs_baseline")):
            res.same(f"precision.deployment[{name}].tf_top1_agreement_vs_baseline",
                     arm["tf_top1_agreement_vs_baseline"],
                     sum(bool(r.get("top1_match_vs_baseline")) for r in pre) / len(pre))
