"""report.py pure parts: labels (en + zh), number formatting, tables, verdicts, not-measured list and
deploy commands, on real record files written with the record envelope."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ascendeval import records, report

ROOT = Path(__file__).resolve().parents[1]


def _rec(section: str, status: str = "ok", reason: str | None = None, **metrics) -> records.Record:
    return records.Record(section=section, status=status, reason=reason, run_id="r1",
                          model={"id": "builtin:tiny-qwen2", "name": "tiny", "dtype": "bfloat16"},
                          target={"engine": "vllm", "device": "cpu", "count": 1}, metrics=metrics)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tiny" / "r1"
    shutil.copyfile(ROOT / "params" / "tiny-qwen2.yaml", (d.mkdir(parents=True) or d) / "params.yaml")
    return d


def test_metric_labels_en_and_zh():
    assert report.metric_label("p99_ttft_ms", "en") == "P99 TTFT (ms)"
    assert report.metric_label("p99_ttft_ms", "zh") == "P99 首 token 时延 TTFT (ms)"
    assert report.metric_label("top1_agreement", "zh") == "Top-1 token 一致率"
    assert report.metric_label("output_tok_per_s", "en") == "Output throughput (tok/s)"
    # every English label has a Chinese one (no half-translated card); metric labels: test_catalog
    from ascendeval.report.text import card_text

    assert [k for k, v in card_text().items() if set(v) != {"en", "zh"}] == []


def test_fmt_never_turns_missing_into_zero():
    assert report.fmt(None, "p99_ttft_ms") == "—"
    assert report.fmt(float("nan"), "mean_cosine") == "—"
    assert report.fmt(0.9625, "top1_agreement") == "96.25%"
    assert report.fmt(0.99912345, "mean_cosine") == "0.999123"
    assert report.fmt(1536, "kv_cache_tokens") == "1,536"
    assert report.fmt(3 * 2**30, "rss_bytes") == "3.00 GiB"
    assert report.fmt(12.3456, "load_s") == "12.346"
    assert report.fmt(True) == "✅"


def test_md_table_escapes_cells():
    t = report.md_table(["a", "b"], [("x|y", "line1\nline2")])
    assert t.splitlines()[2] == "| x\\|y | line1 ⏎ line2 |"
    assert report.md_table(["a"], []) == ""


def test_verdicts_and_not_measured(run_dir: Path):
    records.save(run_dir, _rec("smoke", determinism={"prompts": 10, "identical_prompts": 9, "identical_rate": 0.9},
                               steps={"chat": {"status": "skipped", "reason": "no chat template", "wall_s": 0.1}}))
    records.save(run_dir, _rec("precision", verdict={"passed": False, "checks": [
        {"metric": "top1_agreement", "measured": 0.5, "op": ">=", "threshold": 0.99, "passed": False}]}))
    records.save(run_dir, _rec("features", status="skipped", reason="PD disaggregation needs two devices"))
    records.save(run_dir, _rec("environment", system={"absent": {"npu_smi": "npu-smi not found"}}))
    data = report.load_run(run_dir)
    v = {s: report.section_verdict(data, s) for s in ("environment", "smoke", "precision", "quality", "features")}
    assert v["smoke"].state == "warn" and "90.00%" in v["smoke"].note
    # the deciding figure with its threshold, labelled (not the key)
    assert v["precision"].state == "fail" and v["precision"].note == "Top-1 token agreement 50.00% (threshold >= 99.00%)"
    assert v["quality"].state == "none" and v["features"].state == "none"
    missing = report.not_measured(data)
    whats = {(m["section"], m["what"]): m for m in missing}
    assert whats[("smoke", "Chat-template prompt")]["reason"] == "no chat template"
    assert whats[("features", "—")]["reason"] == "PD disaggregation needs two devices"
    assert whats[("environment", "npu-smi")]["status"] == "hw"
    assert ("quality", "—") in whats and ("performance", "—") in whats  # never run: listed, not hidden


def test_deploy_commands_follow_params(run_dir: Path):
    records.save(run_dir, _rec("smoke", model={"path": "/models/tiny", "architecture": "Qwen2ForCausalLM"}))
    cmds = report.deploy_commands(report.load_run(run_dir))
    serve = cmds["serve"]
    assert "--model /models/tiny" in serve  # builtin model: the local path the run used
    for flag in ("--dtype bfloat16", "--max-model-len 2048", "--enforce-eager", "--kv-cache-memory-bytes 1073741824",
                 "--served-model-name tiny-qwen2", "--tensor-parallel-size 1"):
        assert flag in serve, flag
    assert "python -m vllm.entrypoints.openai.api_server" in serve  # cpu: the vllm console script fails
    assert "model='/models/tiny'" in cmds["python"] and "if __name__ == \"__main__\"" in cmds["python"]
    assert '"model": "tiny-qwen2"' in cmds["curl"]


def test_deploy_commands_npu_modelscope(run_dir: Path):
    shutil.copyfile(ROOT / "params" / "qwen2-0.5b-ascend.yaml", run_dir / "params.yaml")
    cmds = report.deploy_commands(report.load_run(run_dir))
    assert cmds["serve"].splitlines()[0].startswith("export ASCEND_RT_VISIBLE_DEVICES=0")
    assert "vllm serve " in cmds["serve"] and "VLLM_USE_MODELSCOPE=True" in cmds["serve"]


def test_card_from_partial_records_en_zh(run_dir: Path):
    """A run with only some sections still gives a full card: missing sections say so."""
    records.save(run_dir, _rec("smoke", status="failed", reason="load: RuntimeError: boom"))
    data = report.load_run(run_dir)
    en = report.build_card(data, "en").markdown
    zh = report.build_card(data, "zh").markdown
    assert "## Load & smoke test" in en and "load: RuntimeError: boom" in en
    assert "This section has no record in this run" in en  # performance, precision, ...
    assert "## 加载与冒烟测试" in zh and "本次运行没有该章节的记录" in zh and "## 常见问题" in zh
    assert "[records/smoke.json](records/smoke.json)" in en


def test_every_step_the_notebooks_run_has_a_label_in_both_languages():
    """The not-measured list and the FAQ name steps; a step without a label would show its code name."""
    import re

    from ascendeval.report.text import card_text

    code = [p.read_text() for p in [*(ROOT / "notebooks").glob("*.py"), *(ROOT / "ascendeval").rglob("*.py")]]
    names = {n for text in code for n in re.findall(r"\.step\(\s*\"([a-z_0-9]+)\"", text)}
    assert len(names) > 40  # the scan found the steps
    text = card_text()
    missing = sorted(n for n in names if not {"en", "zh"} <= set(text.get(f"step_{n}") or {}))
    assert not missing, f"steps without a step_<name> label (en and zh) in ascendeval/data/card_text.yaml: {missing}"


def test_not_measured_in_chinese_uses_the_writers_chinese_reason(run_dir: Path):
    steps = {"prefix_caching_off": {"status": "skipped", "reason": "prefix_caching: false in params",
                                    "reason_zh": "参数中 prefix_caching 为 false", "wall_s": 0.0},
             "serving": {"status": "failed", "reason": "EndpointError: unreachable", "wall_s": 0.1}}
    records.save(run_dir, _rec("features", steps=steps))
    records.save(run_dir, records.Record(section="quality", status="skipped", reason="disabled in params",
                                         reason_zh="参数中已关闭", run_id="r1", model={"id": "m"},
                                         target={"engine": "vllm", "device": "cpu"}))
    data = report.load_run(run_dir)
    zh = {(i["section"], i["what"]): i["reason"] for i in report.not_measured(data, "zh")}
    assert zh[("features", "关闭前缀缓存（对照）")] == "参数中 prefix_caching 为 false"
    assert zh[("features", "服务化压测")] == "EndpointError: unreachable"  # an error's own text stays as raised
    assert zh[("quality", "—")] == "参数中已关闭"
    en = {(i["section"], i["what"]): i["reason"] for i in report.not_measured(data, "en")}
    assert en[("features", "Prefix caching off (comparison)")] == "prefix_caching: false in params"
    assert "参数中已关闭" in report.build_card(data, "zh").markdown


def test_the_model_description_in_the_cards_language(run_dir: Path):
    """params' model.description_zh on the Chinese card, model.description on the English one."""
    data = report.load_run(run_dir)  # params/tiny-qwen2.yaml carries both
    assert "它的作用是让每个章节都能在本机真实引擎上运行" in report.build_card(data, "zh").markdown
    en = report.build_card(data, "en").markdown
    assert "It exists so every section can run on" in en and "它的作用" not in en


def test_engine_start_roles_compare_overrides_with_the_targets_settings():
    """The run-time table's "Started" column: an override equal to what the target already sets is
    no new configuration; the precision logprob cap changes no figure; hf references, API clients."""
    from ascendeval.report.card import changed_settings, start_role

    target = {"engine": "vllm", "enable_prefix_caching": True, "enforce_eager": True,
              "engine_args": {"max_num_batched_tokens": 512}}
    same = {"label": "features-main", "engine": "vllm",
            "overrides": {"enable_prefix_caching": True, "max_num_batched_tokens": 512}}
    assert changed_settings(same, target) == [] and start_role(same, target) == "role_target_offline"
    other = {"label": "performance", "engine": "vllm", "overrides": {"enable_prefix_caching": False}}
    assert start_role(other, target) == "role_comparison" and changed_settings(other, target) == ["enable_prefix_caching"]
    cap = {"label": "target", "engine": "vllm", "overrides": {"max_logprobs": 151936}}
    assert start_role(cap, target) == "role_target_offline"
    assert start_role({"label": "serving", "engine": "server", "overrides": {}}, target) == "role_target_served"
    assert start_role({"label": "reference", "engine": "hf", "overrides": {"engine": "hf"}}, target) == "role_reference"
    assert start_role({"label": "target", "engine": "openai", "overrides": {"base_url": "x"}}, target) == "role_client"


def test_run_time_table_counts_the_targets_starts_and_says_why(tmp_path):
    import json
    import shutil

    src = Path(__file__).parent / "fixtures" / "golden-run"
    run = tmp_path / "run"
    shutil.copytree(src, run)
    data = report.load_run(run)
    from ascendeval.report.card import target_starts

    starts = target_starts(data)
    assert starts[0] == ("shared", "role_target_served")
    md = report.build_card(data, "en").markdown
    assert f"started {len(starts)} time(s) in this run" in md and "went through the shared server" in md
    # every section of the golden run read the target through the shared server: one start
    assert starts == [("shared", "role_target_served")]
    # a run without one: precision started an offline engine of the target's configuration
    man = json.loads((run / "run.json").read_text())
    man.pop("shared_server")
    (run / "run.json").write_text(json.dumps(man))
    prec = json.loads((run / "records" / "precision.json").read_text())
    prec["metrics"]["engine_starts"] = [st for st in prec["metrics"]["engine_starts"] if st["label"] != "target"] + [
        {"label": "target", "engine": "vllm", "wall_s": 12.5, "overrides": {"max_logprobs": 12288}}]
    (run / "records" / "precision.json").write_text(json.dumps(prec))
    data = report.load_run(run)
    assert target_starts(data) == [("precision", "role_target_offline")]
    md = report.build_card(data, "en").markdown
    assert "started 1 time(s) in this run" in md and "This run had no shared server" in md
