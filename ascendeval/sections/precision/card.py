"""The precision section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ...report.builder import CardBuilder, plots_of
from ...report.cells import fmt, get, md_escape, md_table, opt
from ...report.text import L, metric_label, verdict_label
from ...report.verdicts import Summary, figure
from .metrics import PrecisionMetrics, TeacherForcedReturned


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    m = b.open_part("precision")
    if m is None:
        return
    ref = m.get("reference")
    if isinstance(ref, dict):
        b.add(L(lang, "prec_reference", engine=ref.get("engine"), dtype=ref.get("dtype"), device=ref.get("device"),
                prompts=ref.get("num_prompts"), tokens=ref.get("num_continuation_tokens")))
        if "fallback" in str(ref.get("loaded_as") or ""):
            b.add(L(lang, "reference_fallback", how=ref["loaded_as"]))
        if ref.get("continuations_from") == "target_verified":
            b.add(L(lang, "prec_reference_verified", verified=ref.get("target_tokens_verified"),
                    generated=ref.get("reference_generated_tokens")))
    if any(e.get("label") == "target" and e.get("shared") for e in m.get("engine_starts") or []):
        b.add(L(lang, "prec_target_served"))
    tf = m.get("teacher_forced")
    if isinstance(tf, dict):
        b.add(f"### {L(lang, 'prec_summary')}")
        analysis = _analysis(d.rows("precision", "positions"), d.rows("precision", "prompts"), lang)
        if analysis:
            b.add(analysis)
        b.kv_table("precision", tf, kinds=["positions", "prompts"])
        _per_prompt(b, d.rows("precision", "prompts"))
    checks = get(m, "verdict.checks")
    if isinstance(checks, list) and checks:
        b.add(f"### {L(lang, 'prec_verdict')}")
        b.add(md_table([L(lang, "metric"), L(lang, "measured"), "", L(lang, "threshold"), L(lang, "verdict")],
                       [(metric_label(c.get("metric", ""), lang), fmt(c.get("measured"), c.get("metric", "")), c.get("op"),
                         fmt(c.get("threshold"), c.get("metric", "")), _check_verdict(c, get(m, "teacher_forced.scope"), lang))
                        for c in checks]), b.source("precision"))
    fr = m.get("free_running")
    if isinstance(fr, dict):
        b.add(f"### {L(lang, 'prec_free')}")
        b.kv_table("precision", fr, kinds=["free_running"])
    fv = m.get("full_vocab")
    if isinstance(fv, dict):
        b.add(L(lang, "prec_full_vocab", positions=fv.get("num_positions"), vocab=fv.get("vocab_size"),
                wall=fmt(fv.get("wall_s"), "wall_s", lang)))
        b.kv_table("precision", fv, ["mean_cosine_centered", "min_cosine_centered", "mean_kl", "max_kl",
                                     "top1_agreement", "peak_bytes"])
    dep = m.get("deployment")
    if isinstance(dep, dict):
        _deployment(b, dep)
    plots_of(b, "precision")


# the matrix's columns: the arm against the baseline, then against the reference, then its cost
_DEP_COLUMNS = ("tf_top1_agreement_vs_baseline", "tf_mean_abs_logprob_diff_vs_baseline", "free_agreement_vs_baseline",
                "first_divergence_min", "divergences_beyond_tie", "top1_agreement", "output_ref_top1_agreement",
                "engine_start_s", "wall_s")


def _deployment(b: CardBuilder, dep: dict[str, Any]) -> None:
    """The arm x metric table with a verdict per arm, then the arms that did not run and why."""
    lang = b.lang
    b.add(f"### {L(lang, 'dep_title')}",
          L(lang, "dep_intro", n=dep.get("logprobs_requested"), tie=dep.get("tie_nats"),
            wall=fmt(dep.get("wall_s"), "wall_s", lang)))
    arms = [a for a in dep.get("arms") or [] if isinstance(a, dict)]
    ran = [a for a in arms if a.get("status") == "ok"]

    def setting(a: dict[str, Any]) -> str:
        return md_escape(a.get("setting_zh") if lang == "zh" and a.get("setting_zh") else a.get("setting"), 80)

    if ran:
        def cell(a: dict[str, Any], k: str) -> str:
            if k == "engine_start_s" and a.get(k) is None and a.get("reused_engine"):
                return L(lang, "dep_reused")
            return fmt(a.get(k), k, lang)

        def verdict_cell(a: dict[str, Any]) -> str:
            if a.get("kind") == "baseline":
                return L(lang, "dep_baseline")
            return verdict_label({True: "pass", False: "fail"}.get((a.get("verdict") or {}).get("passed"), "none"), lang)

        rows = [[f"**{a['arm']}**", setting(a)] + [cell(a, k) for k in _DEP_COLUMNS] + [verdict_cell(a)] for a in ran]
        b.add(md_table([L(lang, "dep_arm"), metric_label("setting", lang)] + [metric_label(k, lang) for k in _DEP_COLUMNS]
                       + [L(lang, "verdict")], rows), b.source("precision", ["deployment_positions"]))
    other = [a for a in arms if a.get("status") != "ok"]
    if other:
        b.add(f"#### {L(lang, 'dep_not_run')}",
              md_table([L(lang, "dep_arm"), metric_label("setting", lang), L(lang, "status"), L(lang, "reason")],
                       [(f"**{a.get('arm')}**", setting(a), L(lang, a.get("status", "")),
                         md_escape(a.get("reason_zh") if lang == "zh" and a.get("reason_zh") else a.get("reason"), 200))
                        for a in other]))



NEAR_TIE_NATS = 0.1  # a reference top-1 margin below this: the two best tokens are all but tied


def _analysis(positions: list[dict[str, Any]], prompts: list[dict[str, Any]], lang: str) -> str:
    """A paragraph from the per-position rows: where the top-1 flips are (near-ties or not), the
    largest shift of the reference token's logprob, the prompt with the lowest agreement."""
    if not positions:
        return ""
    flips = [r for r in positions if r.get("top1_match") is False]
    near = [r for r in flips if isinstance(r.get("ref_top1_margin"), (int, float)) and r["ref_top1_margin"] < NEAR_TIE_NATS]
    diffs = [abs(r["ref_logprob_diff"]) for r in positions if isinstance(r.get("ref_logprob_diff"), (int, float))]
    text = L(lang, "prec_analysis", flips=len(flips), n=len(positions),
             rate=fmt(1 - len(flips) / len(positions), "top1_agreement", lang), near=len(near), tie=NEAR_TIE_NATS,
             maxdiff=fmt(max(diffs), "max_abs_ref_logprob_diff", lang) if diffs else "—")
    scored = [p for p in prompts if isinstance(p.get("top1_agreement"), (int, float))]
    if scored:
        worst = min(scored, key=lambda p: p["top1_agreement"])
        text += L(lang, "sentence_sep") + L(lang, "prec_worst", prompt=worst.get("prompt_id"),
                        rate=fmt(worst["top1_agreement"], "top1_agreement", lang))
    return text


def _per_prompt(b: CardBuilder, prompts: list[dict[str, Any]]) -> None:
    """One row per prompt: agreement, overlap and the distribution figures of its scope."""
    if not prompts:
        return
    keys = [k for k in ("num_positions", "top1_agreement", "topk_overlap", "mean_cosine", "mean_cosine_centered_returned",
                        "mean_kl", "mean_kl_returned_renorm", "max_abs_ref_logprob_diff") if k in prompts[0]]
    b.add(f"#### {L(b.lang, 'prec_per_prompt')}",
          md_table([L(b.lang, "prompt")] + [metric_label(k, b.lang) for k in keys],
                   [[p.get("prompt_id")] + [fmt(p.get(k), k, b.lang) for k in keys] for p in prompts]),
          b.source("precision", ["prompts"]))


def _check_verdict(check: dict[str, Any], scope: str | None, lang: str) -> str:
    """A threshold's verdict; one on a full-vocabulary figure that this target's scope cannot give
    (it returned its top-N logprobs only) is said to be not applicable, not "not measured"."""
    if check.get("passed") is None and scope == "target_returned" \
            and check.get("metric") not in TeacherForcedReturned.model_fields:
        return L(lang, "not_applicable_scope")
    return verdict_label({True: "pass", False: "fail"}.get(check.get("passed"), "none"), lang)


def summary(m: PrecisionMetrics, params: dict[str, Any], lang: str) -> Summary:
    """The thresholds' verdict recorded by the section; the failing checks, each with its
    threshold, are the note."""
    ref = m.reference
    ref_name = f"{ref.engine} {ref.dtype} ({ref.device})" if ref else "—"  # all three are required fields
    tf, fr = m.teacher_forced, m.free_running
    figures = []
    if tf is not None:
        cond = L(lang, "cond_teacher_forced", positions=tf.num_positions, prompts=tf.num_prompts, ref=ref_name)
        for key in ("top1_agreement", "mean_kl", "mean_kl_returned_renorm", "mean_cosine",
                    "mean_cosine_centered_returned"):
            value = getattr(tf, key, None)
            if value is not None:
                figures.append(figure(key, value, cond, lang))
    if fr is not None and fr.free_token_agreement is not None:
        figures.append(figure("free_token_agreement", fr.free_token_agreement,
                              L(lang, "cond_free_running", tokens=fr.num_compared_tokens, prompts=fr.num_prompts,
                                ref=ref_name), lang))
    if m.full_vocab is not None and m.full_vocab.mean_cosine_centered is not None:
        figures.append(figure("mean_cosine_centered", m.full_vocab.mean_cosine_centered,
                              L(lang, "cond_full_vocab", positions=m.full_vocab.num_positions,
                                vocab=m.full_vocab.vocab_size, ref=ref_name), lang))
    checks = opt(m, "verdict.checks") or []
    failed = [c for c in checks if c.passed is False]
    note = "; ".join(L(lang, "threshold_note", label=metric_label(c.metric, lang),
                       value=fmt(c.measured, c.metric, lang), op=c.op, threshold=fmt(c.threshold, c.metric, lang))
                     for c in failed)
    passed = opt(m, "verdict.passed")
    bad_arms = [a.arm for a in (m.deployment.arms if m.deployment else []) if a.verdict and a.verdict.passed is False]
    if bad_arms:  # a setting that changes the answers fails the section, whatever the baseline did
        note = "; ".join(x for x in (note, L(lang, "dep_failed_arms", arms=", ".join(bad_arms))) if x)
        passed = False
    state = {True: "pass", False: "fail"}.get(passed, "info")
    word = {"pass": L(lang, "verdict_word_pass"), "fail": L(lang, "verdict_word_fail", checks=note),
            "info": L(lang, "verdict_word_info")}[state]
    shown = note if state == "fail" else (f"{figures[0].label} {figures[0].value}" if figures else "—")
    return Summary(state, note, figures, L(lang, "s_precision", ref=ref_name, figures=shown,
                                           verdict=L(lang, "verdict_word_fail_short") if state == "fail" else word))
