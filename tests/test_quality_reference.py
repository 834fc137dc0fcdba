"""The quality gallery's reference scores the target's outputs teacher-forced instead of generating
them (sections/quality/reference.py). Measured here against the old way, free generation of every
item on the reference: the same "same output" verdicts and the same reference pass/fail, on a
bfloat16 target whose outputs partly leave the float32 reference's greedy path."""

from __future__ import annotations

import copy
import json

import pytest

from ascendeval import context, records
from ascendeval.sections.quality import reference as qref
from ascendeval.sections.quality import steps as quality


@pytest.fixture(scope="module")
def suite_and_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qref")
    params = tmp / "p.yaml"
    params.write_text(
        "model: {id: builtin:tiny-qwen2-untrained, name: qref, dtype: bfloat16}\n"
        "target: {engine: hf, device: cpu}\n"
        "sections: {quality: {suite_max_items: 3, chat: base}}\n", encoding="utf-8")
    run = context.open_section("quality", params, tmp / "run")
    target = quality.open_target(run)
    try:
        suite = quality.run_suites(run, target)
    finally:
        quality.close(target)
    return run, suite


def _reference(run, suite, gallery):
    s = copy.deepcopy(suite)
    run.conf.reference_gallery = gallery
    return qref.run_reference(run, s)


def test_teacher_forced_verdicts_equal_free_generation(suite_and_run):
    run, suite = suite_and_run
    scored = _reference(run, suite, 0)  # no free generation at all
    generated = _reference(run, suite, None)  # every item generated freely (the old way)
    assert scored.reference["generated_items"] == 0
    assert generated.reference["generated_items"] == len(suite.rows) == 18
    agree = [r for r in scored.rows if r["same_as_reference"] is True]
    diverged = [r for r in scored.rows if r["same_as_reference"] is False]
    # a bf16 target under a float32 reference: both kinds occur, so both branches are measured
    assert agree and diverged, [r["reference_first_divergence"] for r in scored.rows]
    by_id = {(r["suite"], r["id"]): r for r in generated.rows}
    for r in scored.rows:
        g = by_id[(r["suite"], r["id"])]
        if r["same_as_reference"]:
            # teacher forcing decided "the reference's greedy output is the target's": generation agrees
            assert g["reference_confirms_teacher_forced"] is True and g["reference_output"] == r["output"]
            assert g["reference_passed"] == r["reference_passed"]
        else:
            assert g["same_as_reference"] is False  # it did leave the reference's greedy path
            assert r["reference_output"] is None and r["reference_passed"] is None
            assert 0 <= r["reference_first_divergence"] < len(r["token_ids"]) and r["reference_margin_at_divergence"] > 0
    assert generated.reference["teacher_forced_contradicted"] == 0
    assert generated.reference["teacher_forced_confirmed"] == len(agree)
    assert scored.reference["same_output_rate"] == generated.reference["same_output_rate"]
    assert scored.reference["pass_rate_items"] == len(agree) and scored.reference["not_generated_items"] == len(diverged)


def test_the_gallery_takes_diverged_items_first(suite_and_run):
    run, suite = suite_and_run
    res = _reference(run, suite, 2)
    made = [r for r in res.rows if r["reference_method"] == "generated"]
    assert len(made) == 2 and res.reference["generated_items"] == 2
    diverged = [r for r in res.rows if r["reference_first_divergence"] is not None]
    first_two = qref._round_robin(diverged)[:2]  # diverged first, one suite at a time in turn
    assert [r["id"] for r in made] == [r["id"] for r in first_two]
    assert len({r["suite"] for r in first_two}) == min(2, len({r["suite"] for r in diverged}))
    assert all(isinstance(r["reference_output"], str) for r in made)
    shares = [r["reference_top1_share"] for r in res.rows]
    assert all(0 <= s <= 1 for s in shares)
    assert res.reference["target_token_top1_share"] == pytest.approx(sum(shares) / len(shares))
    assert res.reference["loaded_as"] == "float32 on cpu" and res.reference["method"] == "teacher_forced"
    rec = run.finish()
    assert records.validate_record(rec) == []


def test_verify_recomputes_the_reference_figures(suite_and_run):
    run, suite = suite_and_run
    res = _reference(run, suite, 0)  # every row decided teacher-forced
    quality.save_suite_rows(run, res)
    run.finish()
    from ascendeval import verify

    checked = verify.verify_run(run.run_dir)
    assert not [p for p in checked.problems if "reference" in str(p)], checked.problems
    path = run.run_dir / "records" / "quality.suites.jsonl"
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    i = next(i for i, r in enumerate(rows) if r["same_as_reference"] is False)
    rows[i]["same_as_reference"] = True  # claims agreement the teacher-forced scores do not show
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    problems = [str(p) for p in verify.verify_run(run.run_dir).problems]
    assert any("quality.reference.same_output_rate" in p for p in problems), problems
    assert any(f"quality.suites[{rows[i]['suite']}/{rows[i]['id']}]" in p for p in problems), problems
