"""The deployment matrix's pure parts: two engines' top-N compared position by position, the arm
plan for a target, the per-arm verdict. The engines themselves: test_deployment_matrix_e2e.py."""

from __future__ import annotations

import math

import pytest

from ascendeval import config
from ascendeval import precision_metrics as pm
from ascendeval.sections.precision import deployment


def test_identical_entries_agree_exactly():
    e = {1: -0.1, 2: -2.5, 3: -3.0}
    r = pm.entries_vs_entries(e, dict(e), token=2, k=2)
    assert r["top1_match"] and r["topk_overlap"] == 1.0 and r["logprob_diff"] == 0.0
    assert r["kl_common_renorm"] == 0.0 and r["base_margin"] == 0.0 and r["finite"]


def test_a_flip_reports_how_sure_the_baseline_was():
    base = {1: -0.2, 2: -1.9, 3: -4.0}
    arm = {1: -1.5, 2: -0.3, 3: -4.0}
    r = pm.entries_vs_entries(base, arm, token=1, k=1)
    assert not r["top1_match"] and r["topk_overlap"] == 0.0
    assert r["base_margin"] == pytest.approx(1.7)  # the baseline preferred 1 over the arm's pick 2 by 1.7 nats
    assert r["logprob_diff"] == pytest.approx(-1.3) and r["kl_common_renorm"] > 0


def test_an_arm_pick_outside_the_baseline_top_n_bounds_the_margin_from_below():
    base = {1: -0.1, 2: -3.0}
    arm = {7: -0.2, 1: -2.0}
    r = pm.entries_vs_entries(base, arm, token=1, k=1)
    assert r["base_margin"] == pytest.approx(2.9)  # at least top-1 minus the lowest returned


def test_non_finite_arm_is_a_mismatch_not_a_number():
    r = pm.entries_vs_entries({1: -0.1, 2: -2.0}, {1: float("nan"), 2: -2.0}, token=1, k=1)
    assert not r["top1_match"] and not r["finite"] and math.isnan(r["logprob_diff"])


def test_missing_token_is_an_error():
    with pytest.raises(ValueError, match="token 5"):
        pm.entries_vs_entries({1: -0.1}, {1: -0.1}, token=5)


def _cfg(**target):
    return config.RunConfig(model={"id": "builtin:tiny-qwen2-untrained", "dtype": "bfloat16"},
                            target={"engine": "vllm", **target})


def test_plan_lists_every_arm_with_a_reason_when_it_cannot_run():
    cfg = _cfg()
    arms = {a.name: a for a in deployment.plan(cfg, cfg.sections.precision, cfg.sections.features)}
    assert {"graph", "chunked_prefill", "prefix_cache", "speculative:ngram", "batch", "tensor_parallel",
            "pd_split"} <= set(arms)
    assert arms["graph"].overrides == {"enforce_eager": False} and arms["graph"].reason is None
    assert arms["batch"].on_baseline and arms["prefix_cache"].on_baseline
    assert "2 or more devices" in arms["tensor_parallel"].reason and arms["tensor_parallel"].reason_zh
    assert arms["pd_split"].reason and arms["pd_split"].reason_zh
    assert arms["chunked_prefill"].overrides["max_num_batched_tokens"] == 16


def test_plan_on_a_graph_target_compares_eager_and_keeps_params_choices():
    cfg = _cfg(enforce_eager=False, count=2)
    cfg.sections.precision.deployment.arms = ["graph", "tensor_parallel"]
    cfg.sections.precision.deployment.dtypes = ["float16"]
    arms = {a.name: a for a in deployment.plan(cfg, cfg.sections.precision, cfg.sections.features)}
    assert arms["graph"].overrides == {"enforce_eager": True}
    assert arms["tensor_parallel"].reason is None and arms["tensor_parallel"].overrides == {"tensor_parallel_size": 1}
    assert "precision.deployment.arms" in arms["batch"].reason
    assert arms["dtype:float16"].overrides == {"dtype": "float16"}


def test_plan_says_why_prefix_cache_cannot_run_when_the_target_turns_caching_off():
    cfg = _cfg(enable_prefix_caching=False)
    arms = {a.name: a for a in deployment.plan(cfg, cfg.sections.precision, cfg.sections.features)}
    assert "enable_prefix_caching" in arms["prefix_cache"].reason and arms["prefix_cache"].reason_zh


def test_unknown_arm_kind_is_a_params_error():
    with pytest.raises(Exception, match="arms"):
        _cfg().sections.precision.deployment.model_validate({"arms": ["warp_drive"]})


def test_arm_verdict_checks_each_threshold():
    th = _cfg().sections.precision.deployment.thresholds
    base = {"top1_agreement": 0.99}
    good = {"tf_top1_agreement_vs_baseline": 1.0, "tf_mean_abs_logprob_diff_vs_baseline": 0.0,
            "divergences_beyond_tie": 0, "top1_agreement": 0.99}
    assert deployment.arm_verdict(dict(good), base, th)["passed"] is True
    bad = {**good, "divergences_beyond_tie": 2}
    v = deployment.arm_verdict(bad, base, th)
    assert v["passed"] is False and [c["metric"] for c in v["checks"] if c["passed"] is False] == ["divergences_beyond_tie"]
    worse = {**good, "top1_agreement": 0.9}
    v = deployment.arm_verdict(worse, base, th)
    assert worse["top1_drop_vs_reference"] == pytest.approx(0.09) and v["passed"] is False
    # a path the arm could not measure is neither pass nor fail
    decode_only = {"divergences_beyond_tie": 0}
    v = deployment.arm_verdict(decode_only, base, th)
    assert v["passed"] is True and sum(c["passed"] is None for c in v["checks"]) == 3
