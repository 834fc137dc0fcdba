"""Record envelope: atomic writes, sidecars, and refusal of impossible values."""

import json

import numpy as np
import pytest

from ascendeval import records


def rec(**metrics):
    return records.Record(section="perf", status="ok", run_id="r1", model={"id": "m"},
                          target={"engine": "vllm", "device": "cpu", "count": 1}, metrics=metrics)


def test_save_and_load_roundtrip(tmp_path):
    path = records.save(tmp_path, rec(p50_ttft_ms=np.float64(12.5), output_tok_per_s=100, mean_tpot_ms=None))
    data = json.loads(path.read_text())
    assert path == tmp_path / "records" / "perf.json"
    assert data["schema_version"] == records.SCHEMA_VERSION
    assert list(data)[0] == "schema_version"
    for key in ("section", "status", "reason", "run_id", "created_at", "model", "target", "env", "git_hash",
                "params", "metrics", "artifacts"):
        assert key in data
    assert data["metrics"] == {"p50_ttft_ms": 12.5, "output_tok_per_s": 100, "mean_tpot_ms": None}
    assert records.load_all(tmp_path)["perf"]["metrics"]["p50_ttft_ms"] == 12.5


@pytest.mark.parametrize("metrics,fragment", [
    ({"mean_cosine": 1.0009}, "cosine 1.0009 outside [-1, 1]"),
    ({"mean_cosine": -1.2}, "outside [-1, 1]"),
    ({"top1_agreement": 1.2}, "outside [0, 1]"),
    ({"failed_rate": -0.1}, "outside [0, 1]"),
    ({"mean_ttft_ms": -3.0}, "negative"),
    ({"mean_kl": -0.01}, "negative"),
    ({"p50_ttft_ms": 30.0, "p99_ttft_ms": 20.0}, "p50_ttft_ms=30.0 > p99_ttft_ms=20.0"),
    ({"latency": {"p10_latency_s": 1.0, "p90_latency_s": 0.5}}, "p10_latency_s=1.0 > p90_latency_s=0.5"),
    ({"rows": [{"accuracy": 2}]}, "rows[0].accuracy"),
])
def test_impossible_values_refused(tmp_path, metrics, fragment):
    with pytest.raises(records.RecordError) as err:
        records.save(tmp_path, rec(**metrics))
    assert fragment in str(err.value)
    assert not (tmp_path / "records" / "perf.json").exists()


def test_nan_becomes_not_measured(tmp_path):
    records.save(tmp_path, rec(mean_itl_ms=float("nan")))
    assert records.load(tmp_path, "perf")["metrics"]["mean_itl_ms"] is None


def test_signed_metrics_allowed(tmp_path):
    records.save(tmp_path, rec(mean_ttft_ms_delta=-0.5, mean_ref_logprob_diff=-0.2, ttft_speedup=0.8))
    assert records.load(tmp_path, "perf")["status"] == "ok"


def test_failed_needs_reason(tmp_path):
    r = rec()
    r.status = "failed"
    with pytest.raises(records.RecordError, match="needs a reason"):
        records.save(tmp_path, r)


def test_rows_sidecar(tmp_path):
    rows = [{"ttft_ms": 1.0, "arr": np.arange(3)}, {"ttft_ms": 2.0, "arr": []}]
    path = records.save_rows(tmp_path, "performance", "requests", rows)
    assert path.name == "performance.requests.jsonl"
    assert records.load_rows(tmp_path, "performance", "requests") == [
        {"ttft_ms": 1.0, "arr": [0, 1, 2]}, {"ttft_ms": 2.0, "arr": []}]
    records.save(tmp_path, rec())
    assert set(records.load_all(tmp_path)) == {"perf"}  # sidecars are not records


def test_atomic_write_leaves_old_record_on_failure(tmp_path):
    records.save(tmp_path, rec(mean_ttft_ms=1.0))
    with pytest.raises(records.RecordError):
        records.save(tmp_path, rec(mean_ttft_ms=-1.0))
    assert records.load(tmp_path, "perf")["metrics"]["mean_ttft_ms"] == 1.0
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["perf.json"]


def test_section_refuses_impossible_metric_without_crashing(tmp_path):
    from pathlib import Path

    from ascendeval.context import SectionRun

    params = Path(__file__).resolve().parents[1] / "params" / "tiny-qwen2.yaml"
    run = SectionRun("precision", params, tmp_path / "run")
    run.add("teacher_forced", {"mean_cosine": 1.0009, "top1_agreement": 0.9})
    run.add("free_running", {"num_prompts": 3})
    rec = run.finish()
    assert rec["status"] == "failed"
    assert "cosine 1.0009 outside [-1, 1]" in rec["reason"]
    assert "teacher_forced" not in rec["metrics"] and rec["metrics"]["free_running"] == {"num_prompts": 3}


def test_only_written_artifacts_are_listed(tmp_path):
    from pathlib import Path

    from ascendeval.context import SectionRun

    params = Path(__file__).resolve().parents[1] / "params" / "tiny-qwen2.yaml"
    run = SectionRun("features", params, tmp_path / "run")
    run.artifact_path("written.png").write_bytes(b"png")
    run.artifact_path("skipped_plot.png")  # handed out, never written (the plot step was skipped)
    assert run.finish()["artifacts"] == ["artifacts/written.png"]
