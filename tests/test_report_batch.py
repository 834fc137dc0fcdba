"""Batch runs: several params files one after another, a failing model does not stop the next one,
a summary table at the end, and --resume keeps the sections already ok."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.e2e


def _params(tmp_path, name: str, model_id: str):
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({
        "model": {"id": model_id, "name": name, "max_model_len": 512},
        "target": {"engine": "hf", "device": "cpu"},
        "sections": {"environment": {"probes": False}, "smoke": {"max_tokens": 4, "serve": False},
                     "report": {"language": "zh", "index": False}},
    }), encoding="utf-8")
    return p


def test_batch_keeps_going_and_resume_keeps_ok_sections(tmp_path, cli, unloadable_model):
    bad = _params(tmp_path, "broken", str(unloadable_model))  # passes the preflight, fails at run time
    good = _params(tmp_path, "good", "builtin:tiny-qwen2-untrained")
    out = tmp_path / "outputs"
    proc = cli(["run", str(bad), str(good), "--sections", "smoke,environment,report", "--run-id", "b1",
                "--no-progress"], out)
    assert proc.returncode == 1  # one model failed
    table = proc.stdout
    assert f"{bad}  smoke" in table and "failed" in table.split(f"{bad}  smoke")[1].splitlines()[0]
    assert "no_such_model_type" in table  # the reason is in the summary
    broken = json.loads((out / "broken" / "b1" / "records" / "smoke.json").read_text())
    assert broken["status"] == "failed" and "no_such_model_type" in broken["reason"]
    good_rows = [ln for ln in table.splitlines() if ln.startswith(str(good))]
    assert any(" environment " in ln and " ok " in ln for ln in good_rows), table
    assert any(ln.split()[1] == "(total)" for ln in good_rows)
    assert "=== (1/2)" in proc.stderr and "=== (2/2)" in proc.stderr  # progress across the batch
    assert f"report: {out / 'good' / 'b1' / 'README.md'}" in proc.stdout
    card = (out / "good" / "b1" / "report.md").read_text(encoding="utf-8")
    assert "## 加载与冒烟测试" in card  # language from params
    assert "## 结论汇总" in (out / "good" / "b1" / "README.md").read_text(encoding="utf-8")

    again = cli(["run", str(good), "--sections", "environment,report", "--resume", "b1", "--no-progress"], out)
    man = json.loads((out / "good" / "b1" / "run.json").read_text())
    env = next(s for s in man["sections"] if s["section"] == "environment")
    assert env["reason"] == "kept from the earlier run (--resume)" and env["wall_s"] == 0.0
    rep = next(s for s in man["sections"] if s["section"] == "report")
    assert rep["status"] == "ok" and rep["wall_s"] > 0, again.stdout + again.stderr[-2000:]
