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
    ref = m.get("reference")
    if rows and isinstance(ref, dict) and ref.get("method") == "teacher_forced":
        _reference(res, ref, rows)
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

    _lm_eval(res, m, run_dir)


# lm-eval's mean-aggregated metrics (the default metric list of multiple_choice tasks, and what
# gsm8k-style tasks declare): the task's value is the mean of the per-sample values, its stderr
# lm-eval's mean_stderr (sample standard deviation / sqrt(n))
_MEAN_BY_DEFAULT = {"acc", "acc_norm", "exact_match", "acc_mutual_info"}


def _aggregation(configs: dict[str, Any], task: str, metric: str) -> str | None:
    for m in (configs.get(task) or {}).get("metric_list") or []:
        if m.get("metric") == metric:
            agg = m.get("aggregation")
            return agg if isinstance(agg, str) else None
    return "mean" if metric in _MEAN_BY_DEFAULT else None


def _lm_eval(res: VerifyResult, m: dict[str, Any], run_dir: Path) -> None:
    """Each leaf task's mean-aggregated score and stderr recomputed from the logged samples, the
    sample counts, and the accuracy-config comparison recomputed from the recorded values."""
    import json
    import math

    import numpy as np

    lm = m.get("lm_eval")
    if not isinstance(lm, dict):
        return
    samples = sidecar_rows(run_dir, "quality", "lm_eval_samples", res)
    results_file = run_dir / str(get_path(lm, ["harness", "results_file"]) or "")
    configs = json.loads(results_file.read_text(encoding="utf-8")).get("configs", {}) if results_file.is_file() else {}
    if not configs:
        res.problem("quality.lm_eval.harness.results_file", f"{results_file} is missing or has no task configs")
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for s in samples:
        for metric, v in (s.get("metric_values") or {}).items():
            if v is not None:
                by[(s.get("task"), metric, s.get("filter"))].append(float(v))
    for row in lm.get("results") or []:
        if row.get("is_group"):
            continue  # groups aggregate their leaves (lm-eval's aggregate_metric_list), checked there
        where = f"quality.lm_eval.results[{row.get('task')}/{row.get('key')}]"
        vals = by.get((row.get("task"), row.get("metric"), row.get("filter")))
        if not vals:
            res.problem(where, "no logged samples for this task, metric and filter")
            continue
        res.same(f"{where}.num_scored", row.get("num_scored"), len(vals))
        if _aggregation(configs, row["task"], row["metric"]) != "mean":
            continue  # corpus-level aggregations (bleu, f1 ...) are not a mean of the samples
        res.same(f"{where}.value", row.get("value"), sum(vals) / len(vals))
        if len(vals) > 1:
            res.same(f"{where}.stderr", row.get("stderr"), float(np.std(vals, ddof=1)) / math.sqrt(len(vals)))
    comp = m.get("lm_eval_comparison")
    if isinstance(comp, dict):
        values = {(r.get("task"), r.get("key")): r.get("value") for r in lm.get("results") or []}
        for r in comp.get("rows") or []:
            got = values.get((r.get("task"), r.get("metric")))
            where = f"quality.lm_eval_comparison[{r.get('task')}/{r.get('metric')}]"
            if got is None:
                if r.get("passed") is not None:
                    res.problem(where, "judged, but the run has no such value")
                continue
            res.same(f"{where}.measured", r.get("measured"), round(got, 4))
            res.same(f"{where}.passed", r.get("passed"),
                     bool(np.isclose(r.get("expected_value"), round(got, 4), rtol=comp.get("rtol"))))


def _reference(res: VerifyResult, ref: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The gallery's reference figures from the suites rows (sections/quality/reference.py)."""
    known = [bool(r["reference_passed"]) for r in rows if r.get("reference_passed") is not None]
    same = [bool(r["same_as_reference"]) for r in rows if r.get("same_as_reference") is not None]
    shares = [r["reference_top1_share"] for r in rows if r.get("reference_top1_share") is not None]
    res.same("quality.reference.pass_rate_items", ref.get("pass_rate_items"), len(known))
    res.same("quality.reference.pass_rate", ref.get("pass_rate"), sum(known) / len(known) if known else None)
    res.same("quality.reference.same_output_rate", ref.get("same_output_rate"), sum(same) / len(same) if same else None)
    res.same("quality.reference.target_token_top1_share", ref.get("target_token_top1_share"),
             sum(shares) / len(shares) if shares else None)
    res.same("quality.reference.generated_items", ref.get("generated_items"),
             sum(1 for r in rows if r.get("reference_method") == "generated"))
    res.same("quality.reference.teacher_forced_contradicted", ref.get("teacher_forced_contradicted"),
             sum(1 for r in rows if r.get("reference_confirms_teacher_forced") is False))
    for r in rows:  # "same output" decided by teacher forcing: every target token is the reference's top-1
        if r.get("reference_method") == "teacher_forced" and r.get("same_as_reference") is True \
                and r.get("reference_first_divergence") is not None:
            res.problem(f"quality.suites[{r.get('suite')}/{r.get('id')}]",
                        "same_as_reference without teacher-forced agreement at every token")
