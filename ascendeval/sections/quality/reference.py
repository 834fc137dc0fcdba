"""The quality suites' reference comparison: the target's outputs scored under the float32
reference, teacher-forced, and a small gallery generated freely on the reference.

Why scoring, not generating: the reference is a transformers model on the host (a 7B is 28 GB in
float32 and decodes at CPU speed); free-running generation of every suite item was the largest
term of a report's time. One forward over prompt + target output gives, per output token, the
reference's top-1 there. When every target token is the reference's top-1, the reference's own
greedy output IS the target's (same tokens, same stop), so "same output as the reference" and the
reference's pass/fail are decided exactly for those items, without generating. Only items where
the target left the reference's greedy path need the reference's own continuation. The gallery,
`sections.quality.reference_gallery` items (null: every item, the old full gallery) generated
freely on the reference, takes those first, then agreeing items, where the free output checks
the teacher-forced conclusion (recorded as confirmed / contradicted); one suite at a time in turn. Divergent items beyond the gallery keep their
teacher-forced figures and no reference output: their reference pass/fail is unknown and left out
of the reference pass rate, whose item count the record gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SectionSkipped
from ...quality_checks import accuracy_with_stderr, run_check
from .steps import SuiteResult, Target, _base_prompt, _gen, _suite_sampling, load_suite, sandbox_limits


def _prompt_ids(ref: Any, row: dict[str, Any], it: dict[str, Any], mode: str) -> list[int]:
    """The prompt as the target read it: its own token ids where the engine returned them, else
    the reference tokenizer's rendering of the same prompt (chat template or plain text)."""
    if row.get("prompt_token_ids"):
        return list(row["prompt_token_ids"])
    if mode == "chat":
        return ref.apply_chat_template([{"role": "user", "content": it["prompt"]}])
    return list(ref.tokenizer()(_base_prompt(it), add_special_tokens=True)["input_ids"])


def score_output(ref: Any, prompt_ids: list[int], output_ids: list[int]) -> dict[str, Any]:
    """The target's output tokens under the reference, one teacher-forced forward: share of tokens
    that are the reference's top-1, the first that is not, the reference's top-1 margin over the
    target's token there (nats; near 0 = a near tie), mean logprob of the target's tokens."""
    import torch

    from ..precision.steps import _forward

    if not output_ids:
        return {"scored_tokens": 0, "top1_share": None, "first_divergence": None, "margin_at_divergence": None,
                "mean_logprob": None}
    logits, _ = _forward(ref, prompt_ids + output_ids, len(output_ids) + 1, False)
    lps = torch.log_softmax(logits[:-1], -1)  # row j predicts output token j
    out = torch.tensor(output_ids)
    top1 = lps.argmax(-1)
    agree = (top1 == out).tolist()
    first = next((j for j, a in enumerate(agree) if not a), None)
    token_lp = lps.gather(1, out[:, None])[:, 0]
    margin = None if first is None else float(lps[first, top1[first]] - token_lp[first])
    return {"scored_tokens": len(output_ids), "top1_share": sum(agree) / len(agree), "first_divergence": first,
            "margin_at_divergence": margin, "mean_logprob": float(token_lp.mean())}


def _round_robin(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows one suite at a time in turn (a gallery of 4 shows four suites, not one)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["suite"], []).append(r)
    out: list[dict[str, Any]] = []
    while any(by.values()):
        for lst in by.values():
            if lst:
                out.append(lst.pop(0))
    return out


def run_reference(run: Any, suite: SuiteResult) -> SuiteResult:
    """Score every suite output under the reference; generate the gallery's divergent items."""
    conf = run.conf
    if not conf.reference:
        raise SectionSkipped("reference disabled in params (sections.quality.reference: false)",
                             zh="参数文件中已关闭参考基线（sections.quality.reference: false）")
    if suite is None:
        raise SectionSkipped("the suites did not run on the target (see step 'suites')",
                             zh="测试套件未在被测目标上运行（见步骤 'suites'）")
    try:
        mpath = run.model().path
    except Exception as exc:  # noqa: BLE001 - e.g. a model only an external server holds
        raise SectionSkipped(f"no local weights for the reference engine ({type(exc).__name__}: {exc})",
                             zh=f"参考基线引擎没有本地权重（{type(exc).__name__}: {exc}）") from exc
    if not Path(mpath).exists():
        raise SectionSkipped("no local weights for the reference engine (model served externally)",
                             zh="参考基线引擎没有本地权重（模型由外部服务提供）")
    longest = max((len(r.get("prompt_token_ids") or []) + len(r.get("token_ids") or []) for r in suite.rows),
                  default=0)
    ref = run.reference("reference", device=conf.reference_device, dtype=conf.reference_dtype,
                        max_tokens=max(longest, 512))
    limits = sandbox_limits(conf)
    items = {(it["suite"], it["id"]): it for s in conf.suites for it in load_suite(s)}
    budget = conf.reference_gallery
    generated = 0
    try:
        target = Target(engine=ref, mode=suite.mode, name=conf.reference_engine)
        for row in suite.rows:  # pass 1: one teacher-forced forward per item
            it = items[(row["suite"], row["id"])]
            out_ids = list(row.get("token_ids") or [])
            score = score_output(ref, _prompt_ids(ref, row, it, suite.mode), out_ids)
            row.update({f"reference_{k}": v for k, v in score.items()})
            if out_ids and score["first_divergence"] is None:
                # every target token is the reference's greedy choice: its output is the target's
                row.update(reference_method="teacher_forced", reference_output=row["output"],
                           reference_passed=row["passed"], reference_detail=row["detail"], same_as_reference=True)
            else:
                row.update(reference_method="teacher_forced", reference_output=None, reference_passed=None,
                           reference_detail=None, same_as_reference=False if out_ids else None)
        # pass 2, the gallery: divergent items first (their reference output is unknown), then
        # agreeing ones, whose free generation checks the teacher-forced conclusion
        order = _round_robin([r for r in suite.rows if r["same_as_reference"] is not True]) + \
            _round_robin([r for r in suite.rows if r["same_as_reference"] is True])
        for row in order[:budget] if budget is not None else order:
            it = items[(row["suite"], row["id"])]
            g = _gen(target, [it["prompt"]], [_base_prompt(it)], _suite_sampling(it, suite.mode))[0]
            generated += 1
            if row["same_as_reference"] is True:
                row["reference_confirms_teacher_forced"] = g.text == row["output"]
            res = run_check(it["check"], g.text, _base_prompt(it) if suite.mode == "base" else "", limits)
            row.update(reference_method="generated", reference_output=g.text, reference_passed=res.passed,
                       reference_detail=res.detail, same_as_reference=g.text == row["output"])
    finally:
        ref.close()
    known = [r["reference_passed"] for r in suite.rows if r["reference_passed"] is not None]
    # the target on the same items, so the two rates side by side are over the same prompts
    target_known = [r["passed"] for r in suite.rows if r["reference_passed"] is not None]
    same = [r["same_as_reference"] for r in suite.rows if r["same_as_reference"] is not None]
    shares = [r["reference_top1_share"] for r in suite.rows if r["reference_top1_share"] is not None]
    info = {"engine": conf.reference_engine, "device": ref.plan.device, "dtype": ref.plan.dtype,
            "loaded_as": ref.plan.describe(), "method": "teacher_forced",
            "pass_rate": accuracy_with_stderr(known)[0], "pass_rate_items": len(known),
            "target_pass_rate_same_items": accuracy_with_stderr(target_known)[0],
            "same_output_rate": accuracy_with_stderr(same)[0],
            "target_token_top1_share": sum(shares) / len(shares) if shares else None,
            "generated_items": generated, "gallery_budget": budget,
            "teacher_forced_confirmed": sum(1 for r in suite.rows if r.get("reference_confirms_teacher_forced")),
            "teacher_forced_contradicted": sum(1 for r in suite.rows
                                               if r.get("reference_confirms_teacher_forced") is False),
            "not_generated_items": sum(1 for r in suite.rows if r["reference_passed"] is None)}
    suite.reference = info
    run.add("reference", info)
    return suite
