"""The typed records, end to end: the exported JSON Schema is the committed one, an undeclared or
ill-typed metric is refused when a section adds it (the section fails, the notebook goes on),
`verify` names the exact key of a record that does not fit its section's model, and
`ascendeval report` re-renders a run from its records without measuring."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import ascendeval
from ascendeval import records, verify

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden-run"
CLI = [sys.executable, "-c", "import sys; from ascendeval.cli import main; sys.exit(main())"]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_committed_schema_is_the_exported_one(tmp_path):
    out = _cli("schema", "--out", str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr
    exported = json.loads((tmp_path / "s.json").read_text())
    assert exported == json.loads((ROOT / "schemas" / "record.schema.json").read_text()), \
        "schemas/record.schema.json is stale: run `ascendeval schema --out schemas/record.schema.json`"
    assert exported["properties"]["schema_version"] == {"const": records.SCHEMA_VERSION}


def test_a_section_refuses_an_undeclared_metric_and_goes_on(tmp_path):
    run = ascendeval.open_section("report", ROOT / "params" / "tiny-qwen2.yaml", tmp_path / "run")
    run.add("verify", {"checks_count": 3, "problems_count": 0, "problems": []})
    run.add("verify_typo", {"checks_count": 3})  # not in the report's metrics model
    run.add("model_facts_from", 7)  # declared as text
    rec = run.finish()
    assert rec["status"] == "failed"
    assert rec["metrics"]["verify"]["checks_count"] == 3  # what fits is kept
    assert "verify_typo" not in rec["metrics"] and "model_facts_from" not in rec["metrics"]
    steps = rec["metrics"]["steps"]
    assert "verify_typo" in steps["add:verify_typo"]["reason"]
    assert "metrics.model_facts_from" in steps["add:model_facts_from"]["reason"]


def test_verify_names_the_key_that_does_not_fit(tmp_path):
    run = shutil.copytree(GOLDEN, tmp_path / "golden-run")
    path = run / "records" / "performance.json"
    rec = json.loads(path.read_text())
    rec["metrics"]["serving_main"]["p99_ttft_msec"] = 12.0
    rec["metrics"]["latency"]["iters"] = "five"
    path.write_text(json.dumps(rec))
    problems = verify.verify_run(run).problems
    assert any("metrics.serving_main.p99_ttft_msec" in p and "not permitted" in p for p in problems), problems
    assert any("metrics.latency.iters" in p for p in problems), problems


def test_report_command_rerenders_from_records_only(tmp_path):
    run = shutil.copytree(GOLDEN, tmp_path / "golden-run")
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run / "records").iterdir()}
    out = _cli("report", str(run), "--lang", "zh")
    assert out.returncode == 0, out.stderr
    assert (run / "README.md").read_text().startswith("# tiny-qwen2 · cpu ×1")
    assert "测评报告" in (run / "README.md").read_text().splitlines()[0]
    assert (run / "report.html").is_file()
    assert digest == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run / "records").iterdir()}
    bad = _cli("report", str(tmp_path / "nope"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a run directory" in bad.stderr


def test_a_schema_1_record_is_read_in_the_current_layout():
    """Real schema-1 records (tests/fixtures/schema1-run): every reader gets them upgraded (renamed
    keys), and a record from a newer ascendeval is named as such."""
    SCHEMA1 = GOLDEN.parent / "schema1-run"
    raw = json.loads((SCHEMA1 / "records" / "features.json").read_text())
    assert raw["schema_version"] == 1 and "identical_rate" in raw["metrics"]["speculative"]["ngram"]
    up = records.load(SCHEMA1, "features")
    assert up["schema_version"] == records.SCHEMA_VERSION
    assert up["metrics"]["speculative"]["ngram"]["same_as_baseline_rate"] == raw["metrics"]["speculative"]["ngram"]["identical_rate"]
    perf = records.load(SCHEMA1, "performance")["metrics"]
    assert "param_count" in perf["plan"]["model"] and "num_parameters" not in perf["plan"]["model"]
    assert records.model_problems("features", up["metrics"]) == []
    newer = {**up, "schema_version": records.SCHEMA_VERSION + 1}
    assert any("upgrade ascendeval to read it" in p for p in records.validate_record(newer))
