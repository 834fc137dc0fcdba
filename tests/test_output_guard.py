"""The correctness guard on speed figures (ascendeval/output_guard.py): judged against a real
float32 transformers reference of the built-in tiny model; the card shows a rejected figure as
invalid, never as a number; an engine whose weights make its outputs garbage has its throughput
marked invalid (e2e, real vLLM)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from ascendeval import builtin_models, output_guard, records, report
from ascendeval.config import OutputGuardConfig
from ascendeval.engines import Sampling
from ascendeval.engines.hf_engine import HFEngine
from ascendeval.schema import GuardResult
from ascendeval.token_prompts import TokenPrompts

GOLDEN = Path(__file__).parent / "fixtures" / "golden-run"


@pytest.fixture(scope="module")
def reference():
    eng = HFEngine(builtin_models.ensure("tiny-qwen2"), device="cpu", dtype="float32")
    yield eng
    eng.close()


def _prompts(ref, n=2, length=12):
    return TokenPrompts(ref.tokenizer(), 3).many(n, length)


def _check(ref, outputs, sampled, ignore_eos=True):
    guard = output_guard.OutputGuard(OutputGuardConfig())
    guard.keep("fig", outputs, sampled=sampled, ignore_eos=ignore_eos)
    res = guard.check(ref)["fig"]
    GuardResult.model_validate(res)  # what the record stores
    return res


def test_the_references_own_greedy_outputs_are_valid(reference):
    gens = reference.generate(_prompts(reference), Sampling(max_tokens=8, temperature=0.0, ignore_eos=True))
    res = _check(reference, gens, sampled=False)
    assert res["status"] == "valid", res
    assert res["num_tokens_checked"] == 16 and res["ref_top1_agreement"] == 1.0 and res["max_gap_nats"] == 0


def test_a_constant_token_and_random_ids_are_invalid(reference):
    prompts = _prompts(reference)
    gens = reference.generate(prompts, Sampling(max_tokens=8, temperature=0.0, ignore_eos=True))
    # a token the model never picks after these prompts, repeated
    used = {t for g in gens for t in g.token_ids}
    tok = next(t for t in range(1000, 2000) if t not in used)
    const = _check(reference, [(p, [tok] * 8) for p in prompts], sampled=False)
    assert const["status"] == "invalid" and "not the reference's greedy choice" in const["reason"], const
    assert const["reason_zh"] and "贪心" in const["reason_zh"]
    rng = random.Random(0)
    vocab = len(reference.tokenizer())
    rand = [(p, [rng.randrange(vocab) for _ in range(8)]) for p in prompts]
    assert _check(reference, rand, sampled=False)["status"] == "invalid"
    # random ids are not a sample of the model either
    res = _check(reference, rand, sampled=True)
    assert res["status"] == "invalid" and res["excess_nll_nats"] > OutputGuardConfig().sampled_excess_nats, res


def test_sampled_outputs_at_temperature_1_are_valid(reference):
    prompts = _prompts(reference, n=4)
    for seed in (1, 2):
        gens = reference.generate(prompts, Sampling(max_tokens=8, temperature=1.0, top_p=1.0, ignore_eos=True,
                                                    seed=seed))
        res = _check(reference, gens, sampled=True)
        assert res["status"] == "valid", res
        assert res["excess_nll_nats"] < OutputGuardConfig().sampled_excess_nats


def test_empty_outputs_with_ignore_eos_are_invalid(reference):
    prompts = _prompts(reference)
    res = _check(reference, [(p, []) for p in prompts], sampled=True)
    assert res["status"] == "invalid" and res["reason"] == "2 of 2 outputs empty", res
    # without ignore_eos an empty output may be the model's own EOS: not a fault by itself
    assert _check(reference, [(p, []) for p in prompts], sampled=False, ignore_eos=False)["status"] == "unchecked"


# --------------------------------------------------------------------------- the card


def _judged(**counts) -> dict:
    f = output_guard.FigureOutputs(sampled=True, ignore_eos=True, **counts)
    return output_guard.judge(f, [], OutputGuardConfig())


@pytest.fixture
def golden_run(tmp_path):
    dest = tmp_path / "outputs" / "tiny-qwen2" / records.load(GOLDEN, "report")["run_id"]
    shutil.copytree(GOLDEN, dest, ignore=shutil.ignore_patterns("ABOUT.md"))
    return dest


def _set_guard(run_dir: Path, section: str, guard: dict) -> None:
    p = run_dir / "records" / f"{section}.json"
    rec = json.loads(p.read_text())
    rec["metrics"]["output_guard"] = guard
    p.write_text(json.dumps(rec))
    assert records.validate_record(json.loads(p.read_text())) == []


def test_card_shows_an_invalid_throughput_as_invalid_and_fails_the_section(golden_run):
    invalid = _judged(num_requests=4, num_empty=4)
    assert invalid["status"] == "invalid"
    valid = {**invalid, "status": "valid", "reason": None, "reason_zh": None, "num_empty": 0}
    _set_guard(golden_run, "performance", {"latency": valid, "throughput": invalid})
    data = report.load_run(golden_run)
    thr = json.loads((golden_run / "records" / "performance.json").read_text())["metrics"]["throughput"]
    for lang, reason in (("en", "4 of 4 outputs empty"), ("zh", "4 个输出中有 4 个为空")):
        shown = report.L(lang, "guard_invalid", reason=reason)
        v = report.section_verdict(data, "performance", lang)
        assert v.state == "fail", v
        assert report.L(lang, "perf_throughput") in v.note and reason in v.note, v.note
        label = report.metric_label("output_tok_per_s", lang)
        thr_fig = [f for f in v.figures if f.label == label and shown == f.value]
        assert len(thr_fig) == 1, v.figures  # the offline throughput, not the serving one
        lat_label = report.metric_label("avg_latency_s", lang)
        assert [f.value for f in v.figures if f.label == lat_label] != [shown]  # latency: a number
        card = report.build_card(data, lang).markdown
        assert report.L(lang, "guard_banner", reason=reason) in card
        assert report.L(lang, "guard_heading") in card and report.L(lang, "guard_status_invalid") in card
    assert thr["output_tok_per_s"] > 0


def test_card_shows_the_number_when_the_guard_passed(golden_run):
    valid = {**_judged(num_requests=4), "status": "valid", "reason": None, "reason_zh": None}
    _set_guard(golden_run, "performance", {"throughput": valid, "serving_main": valid})
    _set_guard(golden_run, "features", {"prefix_caching": valid})
    data = report.load_run(golden_run)
    thr = json.loads((golden_run / "records" / "performance.json").read_text())["metrics"]["throughput"]
    for lang in ("en", "zh"):
        v = report.section_verdict(data, "performance", lang)
        assert v.state != "fail", v
        assert report.fmt(thr["output_tok_per_s"], "output_tok_per_s", lang) in [f.value for f in v.figures]
        assert not any("guard" in f.value or "无效" in f.value for f in v.figures)
        card = report.build_card(data, lang).markdown
        assert report.L(lang, "guard_heading") in card and report.L(lang, "guard_status_valid") in card
        assert report.section_verdict(data, "features", lang).state != "fail"


def test_features_card_marks_an_invalid_feature(golden_run):
    invalid = {**_judged(num_requests=3, num_empty=1), "sampled": False}
    _set_guard(golden_run, "features", {"prefix_caching": invalid})
    data = report.load_run(golden_run)
    for lang in ("en", "zh"):
        v = report.section_verdict(data, "features", lang)
        assert v.state == "fail" and report.metric_label("prefix_caching", lang) in v.note, v
        reason = invalid["reason_zh" if lang == "zh" else "reason"]
        assert report.L(lang, "guard_invalid", reason=reason) in [f.value for f in v.figures]
        assert report.L(lang, "guard_banner", reason=reason) in report.build_card(data, lang).markdown


# --------------------------------------------------------------------------- e2e: real vLLM


def _nan_model(tmp_path: Path) -> Path:
    """A copy of the built-in tiny model whose final norm weight is NaN: every logit is NaN."""
    import torch
    from safetensors.torch import load_file, save_file

    dest = tmp_path / "nan-model"
    shutil.copytree(builtin_models.ensure("tiny-qwen2"), dest)
    weights = load_file(str(dest / "model.safetensors"))
    weights["model.norm.weight"] = torch.full_like(weights["model.norm.weight"], float("nan"))
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def _throughput_guard(tmp_path: Path, model: str) -> dict:
    import ascendeval
    from ascendeval.sections.performance import offline, setup

    params = tmp_path / f"guard-{Path(model).name}.yaml"
    params.write_text(f"""
model: {{id: "{model}", dtype: bfloat16, max_model_len: 256}}
target: {{engine: vllm, device: cpu, enforce_eager: true, kv_cache_memory_bytes: 268435456,
          env: {{VLLM_ENABLE_V1_MULTIPROCESSING: "0"}}, engine_args: {{distributed_executor_backend: uni}}}}
sections:
  performance:
    throughput: {{num_prompts: 4, input_len: 16, output_len: 8, repeats: 1}}
""")
    run = ascendeval.open_section("performance", str(params), str(tmp_path / f"run-{Path(model).name}"))
    run._env_summary = {}
    guard = output_guard.OutputGuard(run.cfg.output_guard)
    plan = run.step("plan", setup.plan, run)
    pe = run.step("engine", setup.open_engine, run)
    run.step("throughput", offline.throughput, run, pe, plan, guard)
    run.step("close_engine", setup.close_engine, pe)
    run.step("output_guard", output_guard.check_run, run, guard)
    rec = run.finish()
    assert rec["metrics"]["steps"]["output_guard"]["status"] == "ok", rec["metrics"]["steps"]
    return rec["metrics"]


@pytest.fixture
def restored_environ():
    """The in-process engine puts the params' target.env into this process's environment
    (VLLM_ENABLE_V1_MULTIPROCESSING=0): restored afterwards, or later tests' subprocesses inherit it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.e2e
def test_throughput_of_an_engine_with_nan_weights_is_invalid(tmp_path, restored_environ):
    good = _throughput_guard(tmp_path, str(builtin_models.ensure("tiny-qwen2")))
    assert good["output_guard"]["throughput"]["status"] == "valid", good["output_guard"]
    assert good["output_guard"]["throughput"]["num_requests"] == 4
    bad = _throughput_guard(tmp_path, str(_nan_model(tmp_path)))
    res = bad["output_guard"]["throughput"]
    assert res["status"] == "invalid", res
    assert bad["throughput"]["output_tok_per_s"] > 0  # the engine timed it: only the guard says it is garbage


def test_verify_reads_the_guard_block(golden_run):
    from ascendeval import verify

    valid = {**_judged(num_requests=4), "status": "valid", "reason": None, "reason_zh": None,
             "num_samples": 2, "num_tokens_checked": 16, "ref_top1_agreement": 0.5, "excess_nll_nats": 0.1}
    _set_guard(golden_run, "performance", {"throughput": valid, "latency": _judged(num_requests=4, num_empty=4)})
    problems = verify.verify_run(golden_run).problems
    assert not [p for p in problems if "output_guard" in p or p.startswith("performance")], problems
    _set_guard(golden_run, "performance", {"throughput": {**valid, "num_nonfinite": 1}})
    problems = verify.verify_run(golden_run).problems
    assert any("output_guard[throughput]" in p and "non-finite" in p for p in problems), problems
    # the features section's guard is checked by the same rule
    _set_guard(golden_run, "features", {"capacity": {**valid, "status": "invalid", "reason": None}})
    problems = verify.verify_run(golden_run).problems
    assert any("features.output_guard[capacity]" in p and "without a reason" in p for p in problems), problems


def test_serving_outputs_for_the_guard_prefer_the_servers_ids(reference):
    from ascendeval import loadgen
    from ascendeval.metrics import RequestResult

    tok = reference.tokenizer()
    prompt = _prompts(reference, n=1)[0]
    text = tok.decode(reference.generate([prompt], Sampling(max_tokens=6, temperature=0.0,
                                                            ignore_eos=True))[0].token_ids)
    with_ids = RequestResult(index=0, prompt_tokens=12, max_tokens=6, success=True, output_text=text,
                             output_token_ids=[5, 6], prompt_token_ids=[1, 2])
    text_only = RequestResult(index=1, prompt_tokens=12, max_tokens=6, success=True, output_text=text)
    failed = RequestResult(index=0, prompt_tokens=12, max_tokens=6, error="HTTP 500")
    out = loadgen.guard_outputs([with_ids, text_only, failed], [prompt, prompt], tok)
    assert out[0] == ([1, 2], [5, 6])
    assert out[1] == (prompt, tok.encode(text, add_special_tokens=False)) and len(out) == 2
    # no ids and no tokenizer: counted (not empty), never compared
    assert loadgen.guard_outputs([text_only], [prompt, prompt], None) == [([], [0])]
    # and the guard judges the re-tokenized greedy text against the reference
    assert _check(reference, out[1:], sampled=False)["status"] == "valid"

    # the server counted 6 tokens: a text that re-tokenizes to another length is not the generated
    # ids (an untrained model's tokens that decode to nothing): counted, not compared, not empty
    n = len(tok.encode(text, add_special_tokens=False))
    counted = RequestResult(index=1, prompt_tokens=12, max_tokens=6, success=True, output_text=text, output_tokens=n)
    off_count = RequestResult(index=1, prompt_tokens=12, max_tokens=6, success=True, output_text=text,
                              output_tokens=n + 1)
    no_text = RequestResult(index=1, prompt_tokens=12, max_tokens=6, success=True, output_text="", output_tokens=6)
    nothing = RequestResult(index=1, prompt_tokens=12, max_tokens=6, success=True, output_text="", output_tokens=0)
    out = loadgen.guard_outputs([counted, off_count, no_text, nothing], [prompt, prompt], tok)
    assert out == [(prompt, tok.encode(text, add_special_tokens=False)), ([], [0]), ([], [0]), (prompt, [])]
    g = output_guard.OutputGuard(OutputGuardConfig())
    g.keep("serving_main", out)
    res = g.check(reference)["serving_main"]
    assert res["num_empty"] == 1 and res["num_samples"] == 1 and res["status"] == "invalid"  # the one truly empty
    assert loadgen.point_figure({"sweep": "concurrency", "request_rate_label": "inf", "max_concurrency": 2}) \
        == "serving.concurrency rate=inf conc=2"
    assert loadgen.point_figure({"sweep": "main", "request_rate_label": "4"}) == "serving_main"
