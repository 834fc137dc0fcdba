"""Precision section with real transformers models (builtin tiny-qwen2-untrained): identical
model -> perfect agreement, fp32 vs bf16 -> values strictly inside the valid ranges, a perturbed
weight -> caught by both the weight scan and the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ascendeval import builtin_models, config, weights
from ascendeval.sections.precision import steps as precision
from ascendeval import precision_metrics as pm


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return str(builtin_models.ensure("tiny-qwen2-untrained"))


def _cfg(dtype: str, **prec) -> config.RunConfig:
    prec = {"max_new_tokens": 8, "max_prompts": 3, **prec}
    return config.parse({"model": {"id": "builtin:tiny-qwen2-untrained", "dtype": dtype}, "target": {"engine": "hf"},
                         "sections": {"precision": prec}})


@pytest.fixture(scope="module")
def reference(tiny_path):
    cfg = _cfg("float32")
    ref = precision.run_reference(cfg, cfg.sections.precision, tiny_path)
    yield ref
    precision.close(ref)


def test_reference_sequences(reference):
    assert len(reference.sequences) == 3
    for s in reference.sequences:
        assert len(s.prompt_ids) > 0 and 0 < len(s.continuation_ids) <= 8
        assert s.ids[: len(s.prompt_ids)] == s.prompt_ids
    info = reference.info()
    assert info["dtype"] == "float32" and info["device"] == "cpu" and info["num_prompts"] == 3


def test_target_proposed_continuations_equal_the_references_own_generation(reference, tiny_path):
    """The reference's continuations, proposed by a target and checked by one reference forward,
    are exactly those it generates token by token: with the same model in float32 every token is
    confirmed and nothing is generated; with a bfloat16 target whose proposals drift, and with
    one whose proposals are another model's (the trained tiny-qwen2), the reference generates
    from the first position its own choice differs, and the result is still its own."""
    cfg = _cfg("float32")
    conf = cfg.sections.precision
    own = [s.continuation_ids for s in reference.sequences]
    same = precision.open_target(cfg, tiny_path)
    try:
        got = precision.run_reference(cfg, conf, tiny_path, target=same)
    finally:
        precision.close(same)
    assert [s.continuation_ids for s in got.sequences] == own
    assert got.continuations_from == "target_verified" and got.reference_generated_tokens == 0
    assert got.target_tokens_verified == sum(len(c) for c in own)
    assert got.target_continuations == own
    assert [s.continuation_text for s in got.sequences] == [s.continuation_text for s in reference.sequences]
    precision.close(got)

    other_path = str(builtin_models.ensure("tiny-qwen2"))
    other = precision.open_target(_cfg("float32"), other_path)
    try:
        got = precision.run_reference(cfg, conf, tiny_path, target=other)
    finally:
        precision.close(other)
    assert [s.continuation_ids for s in got.sequences] == own
    assert got.reference_generated_tokens > 0  # the proposals were another model's: it generated the rest
    assert got.target_tokens_verified + got.reference_generated_tokens == sum(len(c) for c in own)
    info = got.info()
    assert info["continuations_from"] == "target_verified" and info["reference_generated_tokens"] > 0
    # the teacher-forced rows come from the forward the check made (kept by token ids)
    s0 = got.sequences[0]
    assert torch.equal(got.logits(s0.ids, 3), precision._forward(got.engine, s0.ids, 3, False)[0])
    precision.close(got)


def test_identical_model_and_dtype_is_perfect(reference, tiny_path):
    cfg = _cfg("float32")
    conf = cfg.sections.precision
    tgt = precision.open_target(cfg, tiny_path)
    try:
        tf = precision.teacher_forced(reference, tgt, conf)
        fr = precision.free_running(reference, tgt, conf)
    finally:
        precision.close(tgt)
    s = tf.summary
    assert tf.scope == pm.SCOPE_FULL
    assert s["num_positions"] == sum(len(x.ids) - 1 for x in reference.sequences)
    assert s["top1_agreement"] == 1.0 and s["topk_overlap"] == 1.0
    assert s["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and s["min_cosine"] <= 1.0
    assert s["mean_kl"] == pytest.approx(0.0, abs=1e-9) and s["max_kl"] >= 0.0
    assert s["mean_abs_ref_logprob_diff"] == pytest.approx(0.0, abs=1e-5)
    assert [r["rel_diff"] for r in tf.hidden_layers] == pytest.approx([0.0] * len(tf.hidden_layers), abs=1e-6)
    assert fr.summary["free_token_agreement"] == 1.0 and fr.summary["num_prompts_diverged"] == 0
    v = precision.verdict(tf, fr, conf)
    assert v.passed is True and all(c.passed for c in v.checks if c.passed is not None)


def test_fp32_vs_bf16_is_strictly_inside_valid_ranges(reference, tiny_path, tmp_path):
    cfg = _cfg("bfloat16", positions="continuation")
    conf = cfg.sections.precision
    tgt = precision.open_target(cfg, tiny_path)
    try:
        tf = precision.teacher_forced(reference, tgt, conf)
    finally:
        precision.close(tgt)
    s = tf.summary
    assert all(r["in_continuation"] for r in tf.rows)
    assert 0.0 < s["mean_kl"] and s["max_kl"] < 1.0
    assert 0.9 < s["mean_cosine"] < 1.0 and -1.0 < s["min_cosine"] < 1.0
    assert 0.0 < s["mean_mse"] and 0.0 < s["logit_max_abs"]
    assert 0.0 < s["top1_agreement"] <= 1.0 and 0.0 < s["topk_overlap"] <= 1.0
    # bf16 error grows through the layers and is non-zero after the first decoder layer
    rel = [r["rel_diff"] for r in tf.hidden_layers]
    assert all(x > 0 for x in rel[1:]) and all(x < 0.5 for x in rel)
    pm.validate_ranges(s)
    pm.validate_ranges(tf.rows)
    assert precision.plot_hidden_states(tf, tmp_path / "h.png").stat().st_size > 1000
    assert precision.plot_positions(tf, tmp_path / "p.png").stat().st_size > 1000


def test_max_positions_caps_the_window(reference, tiny_path):
    cfg = _cfg("float32", max_positions=4, hidden_states=False)
    tgt = precision.open_target(cfg, tiny_path)
    try:
        tf = precision.teacher_forced(reference, tgt, cfg.sections.precision)
    finally:
        precision.close(tgt)
    assert tf.summary["num_positions"] == 4 * len(reference.sequences)
    for s in reference.sequences:  # the LAST positions are kept
        pos = [r["position"] for r in tf.rows if r["prompt_id"] == s.prompt.id]
        assert pos == list(range(len(s.ids) - 5, len(s.ids) - 1))
    assert tf.hidden_layers == []


def test_perturbed_weight_is_caught_by_scan_and_comparison(reference, tiny_path, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "perturbed"
    shutil.copytree(tiny_path, bad)
    files = sorted(bad.glob("*.safetensors"))
    assert len(files) == 1
    sd = load_file(str(files[0]))
    name = "model.layers.2.mlp.down_proj.weight"
    sd[name] = sd[name].clone()
    sd[name][5, :] = 3.0  # one corrupted output row of a decoder layer
    save_file(sd, str(files[0]), metadata={"format": "pt"})

    scan = weights.scan_weights(bad)
    assert name in scan.summary()["flagged"]
    assert weights.scan_weights(tiny_path).summary()["num_flagged_tensors"] == 0

    cfg = _cfg("float32")
    conf = cfg.sections.precision
    tgt = precision.open_target(cfg, str(bad))
    try:
        tf = precision.teacher_forced(reference, tgt, conf)
    finally:
        precision.close(tgt)
    s = tf.summary
    assert s["mean_kl"] > 1e-3 and s["mean_cosine"] < 0.9999
    rel = [r["rel_diff"] for r in tf.hidden_layers]
    assert rel[2] < 1e-6 < rel[3]  # identical up to layer 2's input, diverges from its output on
    v = precision.verdict(tf, None, conf)
    assert v.passed is False
    assert {c.metric for c in v.checks if c.passed is False} >= {"mean_kl"}


def test_record_refuses_impossible_values(reference, params_factory):
    """record() validates before anything reaches the SectionRun: a corrupted summary (the seed
    report's cosine of 1.0009) fails the step with the value named, and the record on disk holds
    no precision metrics and no sidecars."""
    from ascendeval import context, records

    params = params_factory("prec-bad", target={"engine": "hf", "device": "cpu"},
                            sections={"precision": {"max_new_tokens": 8}})
    run_dir = params.parent / "run"
    run = context.open_section("precision", params, run_dir)
    row = {"prompt_id": "p0", "position": 0, "top1_match": True, "cosine": 1.0009, "kl": 0.0, "target_finite": True}
    tf = precision.TeacherForcedResult(scope=pm.SCOPE_FULL, rows=[row], per_prompt=[],
                                       summary={"mean_cosine": 1.0009, "mean_kl": -0.5}, hidden_layers=[],
                                       wall_s=0.1)
    with pytest.raises(ValueError, match=r"mean_cosine: 1\.0009 outside \[-1\.0, 1\.0\].*mean_kl: -0\.5"):
        precision.record(run, reference, tf, None, None)
    assert run.metrics == {} and run.artifacts == []

    assert run.step("record", precision.record, run, reference, tf, None, None) is None  # as the notebook calls it
    assert run.steps["record"]["status"] == "failed" and "1.0009" in run.steps["record"]["reason"]
    rec = run.finish()
    assert rec["status"] == "failed" and "record: ValueError: impossible precision values" in rec["reason"]
    assert set(rec["metrics"]) == {"steps"}
    assert records.validate_record(rec) == []
    assert sorted(p.name for p in (run_dir / "records").iterdir()) == ["precision.json"]

    tf.summary = {"mean_cosine": 0.5, "mean_kl": 0.1}  # the summary is fine, one position row is not
    with pytest.raises(ValueError, match=r"positions\[0\]\.cosine: 1\.0009"):
        precision.record(run, reference, tf, None, None)
    assert "teacher_forced" not in run.metrics


def test_prompts_and_config_errors():
    conf = _cfg("float32").sections.precision
    ps = precision.load_prompts(conf)
    assert len(ps) == 3
    allp = precision.load_prompts(_cfg("float32", max_prompts=None).sections.precision)
    assert {p.kind for p in allp} == {"english", "chinese", "code", "arithmetic"} and len(allp) == 8
    with pytest.raises(config.ConfigError, match="top_k .* must be <= target_logprobs"):
        _cfg("float32", top_k=8, target_logprobs=4)
    with pytest.raises(config.ConfigError, match="positions: 'some' is not allowed"):
        _cfg("float32", positions="some")


def test_full_vocab_kl_of_float32_logprobs_over_a_qwen_vocabulary_is_not_negative():
    """vLLM returns a float32 log_softmax; over 151,936 tokens its mass is 1 only to ~1e-7. The
    KL of the same distribution read back that way came out at -9.4e-8 on the Qwen2-0.5B shape
    and the precision section failed its range check. Renormalised in float64 it is >= 0 and ~0."""
    import torch

    from ascendeval.sections.precision.steps import full_vocab_rows

    torch.manual_seed(0)
    logits = torch.randn(8, 151_936) * 2
    as_vllm = torch.log_softmax(logits.float(), -1)
    ref = torch.log_softmax(logits.double(), -1)
    naive = (ref.exp() * (ref - as_vllm.double())).sum(-1)
    assert (naive < -1e-9).any()  # the failure this guards against is real at this vocabulary size
    rows = full_vocab_rows(logits, as_vllm)
    assert all(0 <= r["kl"] < 1e-9 and r["top1_match"] and r["cosine"] > 1 - 1e-9 for r in rows)
    other = full_vocab_rows(logits, torch.log_softmax(logits.float() * 1.1, -1))  # a real difference stays
    assert all(r["kl"] > 1e-3 for r in other)
