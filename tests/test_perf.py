"""perf.py: prompt construction, model facts and bad inputs (fast), and the notebook end to end
on the built-in untrained tiny model with real vLLM (eager) and transformers (e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ascendeval.sections.performance import offline, roofline, serving, setup

ROOT = Path(__file__).resolve().parents[1]


class _Tok:
    vocab_size = 50
    all_special_ids = [0, 1, 2]


def test_token_prompts_exact_length_no_special_tokens():
    ps = setup.token_prompts(_Tok(), 4, 33, seed=1)
    assert len(ps) == 4 and all(len(p) == 33 for p in ps)
    assert all(3 <= t < 50 for p in ps for t in p)
    assert ps == setup.token_prompts(_Tok(), 4, 33, seed=1)  # seeded
    with pytest.raises(ValueError, match="number of prompts must be >= 1"):
        setup.token_prompts(_Tok(), 0, 8, seed=0)


def test_output_len_above_max_model_len_is_one_clear_error():
    pe = setup.PerfEngine(engine=None, info={}, max_model_len=64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"performance.latency: input 32 \+ output 64 tokens = 96 exceeds max_model_len 64"):
        setup._check_len(pe, "latency", 32, 64)
    setup._check_len(pe, "latency", 32, 32)  # fits


def test_model_facts_from_a_real_checkpoint(tmp_path):
    from safetensors.torch import save_file
    import torch

    save_file({"a": torch.zeros(10, 20), "b": torch.zeros(5)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 8,
                                                       "num_attention_heads": 2, "num_key_value_heads": 1,
                                                       "torch_dtype": "float32", "vocab_size": 10}))
    f = setup.model_facts(tmp_path, "bfloat16")
    assert f["param_count"] == 205 and f["num_key_value_heads"] == 1  # models.model_card_facts keys
    assert f["weights_bytes"] == 410  # bf16 at run time, whatever the checkpoint holds
    assert f["head_dim"] == 4 and f["kv_bytes_per_token"] == 2 * 2 * 1 * 4 * 2
    assert setup.model_facts(tmp_path, "auto")["weights_bytes"] == 820


def _params(tmp_path: Path, engine: str) -> Path:
    p = tmp_path / f"perf-{engine}.yaml"
    p.write_text(f"""
model: {{id: "builtin:tiny-qwen2-untrained", dtype: bfloat16, max_model_len: 512}}
target: {{engine: {engine}, device: cpu, enforce_eager: true, kv_cache_memory_bytes: 1073741824}}
sections:
  performance:
    latency: {{input_len: 16, output_len: 8, batch_size: 2, warmup_iters: 1, iters: 3, e2e_output_lens: [4, 8], e2e_iters: 1}}
    throughput: {{num_prompts: 4, input_len: 16, output_len: 8, repeats: 1}}
    split: {{batch_sizes: [1, 2], prefill_input_len: 64, decode_input_len: 8, decode_output_len: 8, iters: 1}}
    graph: {{enabled: false}}
    serving: {{num_prompts: 6, input_len: 16, output_len: 6, request_rates: [20, inf], concurrencies: [2], warmup_requests: 1,
               repeats: 2, capacity: {{baseline_requests: 3, probe_requests: 6, request_budget: 48}}}}
""")
    return p


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["vllm", "hf"])
def test_notebook_end_to_end(tmp_path, engine):
    import papermill as pm

    run_dir = tmp_path / "run"
    pm.execute_notebook(str(ROOT / "notebooks" / "02_performance.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"params_file": str(_params(tmp_path, engine)), "run_dir": str(run_dir)},
                        cwd=str(ROOT / "notebooks"), kernel_name="python3")
    rec = json.loads((run_dir / "records" / "performance.json").read_text())
    steps = rec["metrics"]["steps"]
    m = rec["metrics"]
    for step in ("plan", "engine", "latency", "throughput", "prefill_decode", "memory"):
        assert steps[step]["status"] == "ok", (step, steps[step])
    assert m["latency"]["iters_count"] == 3 and m["latency"]["p10_latency_s"] <= m["latency"]["p99_latency_s"]
    assert [r["output_len"] for r in m["e2e_latency"]] == [4, 8]
    assert m["throughput"]["total_output_tokens"] == 32
    assert [r["batch_size"] for r in m["prefill_decode"]] == [1, 2]
    assert steps["graph_vs_eager"]["status"] == "skipped"
    # the output guard checked every figure that generated, against the float32 reference
    assert steps["output_guard"]["status"] == "ok", steps["output_guard"]
    guard = m["output_guard"]
    assert {"latency", "throughput", "prefill_decode"} <= set(guard)
    assert all(g["status"] == "valid" and g["num_tokens_checked"] > 0 for g in guard.values()), guard
    assert guard["throughput"]["sampled"] and guard["throughput"]["num_requests"] == 4
    print(f"output_guard step: {steps['output_guard']['wall_s']:.1f} s ({engine})")
    if engine == "vllm":
        assert set(guard) - {"capacity.rate", "capacity.concurrency"} == {
            "latency", "throughput", "prefill_decode", "serving_main", "serving.rate rate=20", "serving.rate rate=inf",
            "serving.concurrency rate=inf conc=2"}, sorted(guard)
        assert "capacity.rate" in guard  # the capacity probes' outputs are checked too
        assert not guard["serving_main"]["sampled"] and guard["serving_main"]["num_requests"] == 12
        assert m["throughput_bare"]["total_output_tokens"] == 32 and m["throughput_harness_vs_bare_x"] > 0
        assert m["memory"]["kv_cache_tokens"] > 0
        assert steps["serving"]["status"] == "ok"
        points = m["serving"]
        assert [p["sweep"] for p in points] == ["main", "rate", "rate", "concurrency"]
        assert all(p["completed_count"] == 12 and p["failed_count"] == 0 for p in points)  # 6 requests x 2 repeats
        assert all([r["completed_count"] for r in p["repeat_figures"]] == [6, 6] for p in points)
        # the rate sweep's "inf" point repeats the main point's settings: the two are compared
        assert {a["compared_metric"] for a in m["serving_agreement"]} == {"output_tok_per_s", "median_ttft_ms",
                                                                          "median_tpot_ms"}
        assert all(a["second_point"] == "rate rate=inf" and a["repeat_spread"] is not None
                   for a in m["serving_agreement"])
        assert all(p["median_ttft_ms"] > 0 for p in points)
        # a busy server may stream several tokens in one chunk; when all 6 arrive with the first,
        # E2EL == TTFT and TPOT is truly 0 for that request (seen at the highest rate in CI)
        assert all(p["median_tpot_ms"] is not None and p["median_tpot_ms"] >= 0 for p in points)
        assert any(p["median_tpot_ms"] > 0 for p in points)
        rows = [json.loads(x) for x in (run_dir / "records" / "performance.requests.jsonl").read_text().splitlines()]
        assert sum(1 for r in rows if not r["warmup"]) == 48
        # timed requests at output_len; the one-at-a-time warm-ups at warmup_output_len (2)
        assert {r["output_tokens"] for r in rows if not r["warmup"]} == {6}
        assert {r["output_tokens"] for r in rows if r["warmup"]} == {2}
        assert {r["repeat"] for r in rows} == {0, 1}
        assert (run_dir / "artifacts" / "perf_latency_cdf.png").stat().st_size > 0
        assert steps["roofline"]["status"] == "skipped"  # no environment record in this run dir
        _check_serving_beyond_the_anchors(run_dir, m, steps, rows)
    else:
        assert m["throughput_bare"] is None
        assert steps["serving"]["status"] == "skipped" and "not applicable" in steps["serving"]["reason"]


def _check_serving_beyond_the_anchors(run_dir: Path, m: dict, steps: dict, rows: list[dict]) -> None:
    """Against the run's own vLLM server: clean points, SLOs from the baseline and goodput under
    them, intervals, telemetry, the capacity search and every tool's definitions."""
    points = m["serving"]
    # vLLM's /reset_prefix_cache answered before every point (the run's servers enable it)
    assert all(p["prefix_cache_reset"] is True for p in points), [p["prefix_cache_reset_note"] for p in points]
    assert all(p["input_len_requested"] == 16 and p["input_tokens_actual_min"] == p["input_tokens_actual_max"] == 16
               for p in points)
    slo = m["serving_slo"]
    base = slo["single_request_baseline"]
    assert slo["source"] == "baseline" and base["completed_count"] == 3
    assert slo["ttft_ms"] >= 5 * base["median_ttft_ms"] and slo["tpot_ms"] >= 2 * base["median_tpot_ms"]
    assert all(p["goodput_req_per_s"] is not None and 0 <= p["good_count"] <= p["completed_count"] for p in points)
    for p in points:  # each median inside its own interval
        lo, hi = p["ci"]["intervals"]["median_tpot_ms"]
        assert lo <= p["median_tpot_ms"] <= hi and p["ci"]["repeats"] == 2
    tel = [json.loads(x) for x in (run_dir / "records" / "performance.telemetry.jsonl").read_text().splitlines()]
    assert tel and all(t["server_num_procs"] >= 1 and t["server_rss_bytes"] > 0 for t in tel)
    assert all(p["telemetry"]["device_not_exercised"].startswith("not exercised") for p in points)
    assert steps["serving_capacity"]["status"] == "ok", steps["serving_capacity"]
    cap = m["capacity_slo"]
    assert cap["requests_used"] <= 48 and cap["probes"] and cap["slo_source"] == "baseline"
    for pr in cap["probes"]:
        assert pr["share_met"] == pr["good_count"] / pr["num_requests"] and pr["met"] == (pr["share_met"] >= 0.99)
    cap_rows = [json.loads(x) for x in
                (run_dir / "records" / "performance.capacity_requests.jsonl").read_text().splitlines()]
    assert len(cap_rows) == cap["requests_used"]
    assert (run_dir / "artifacts" / "perf_capacity_slo.png").stat().st_size > 0
    assert (run_dir / "artifacts" / "perf_request_timeline.png").stat().st_size > 0
    # every tool's definitions over the main point: vLLM's are this report's own figures
    assert steps["serving_definitions"]["status"] == "ok"
    vllm = next(t for t in m["serving_definitions"]["tools"] if t["tool"] == "vllm")
    for key in ("median_ttft_ms", "mean_tpot_ms", "p99_itl_ms", "median_e2el_ms"):
        assert vllm[key] == pytest.approx(points[0][key], rel=1e-9), key
    assert len(m["serving_definitions"]["tools"]) >= 5 and m["serving_definitions"]["findings"]
    # the client's own error, calibrated in this run at the planned rates, and its figures per point
    assert steps["client_calibration"]["status"] == "ok", steps["client_calibration"]
    cal = m["loadgen_calibration"]
    planned = {str(p["request_rate_label"]) for p in points}
    assert {c["request_rate_label"] for c in cal} == planned | {"inf"}
    assert all(c["matched_count"] == c["completed_count"] == c["num_requests"] for c in cal)
    assert all(c["client_overhead_median_ms"] >= 0 and c["client"]["transport"] == "fast" for c in cal)
    assert all(isinstance(p["client"]["client_bound"], bool) and p["client"]["loop_lag_samples"] > 0 for p in points)
    from ascendeval import verify

    # the capacity probes, goodput under the SLOs, the intervals and the client's calibration
    # recomputed from the raw rows
    assert [p for p in verify.verify_run(run_dir).problems if p.startswith("performance")] == []


def _serving_params(tmp_path: Path, url: str, **serving) -> Path:
    serving.setdefault("repeats", 1)
    # no single-request baseline before the points: these tests count the server's requests
    serving.setdefault("capacity", "{enabled: false}")
    extra = "".join(f", {k}: {v}" for k, v in serving.items())
    p = tmp_path / "perf-serving.yaml"
    p.write_text(f"""
model: {{id: "builtin:tiny-qwen2-untrained", dtype: bfloat16, max_model_len: 512}}
target: {{engine: vllm, device: cpu, enforce_eager: true, kv_cache_memory_bytes: 1073741824}}
sections:
  performance:
    serving: {{url: "{url}", num_prompts: 10, input_len: 8, output_len: 4, request_rates: [], concurrencies: [2],
               max_concurrency: 2, warmup_requests: 1, settle_max_s: 0{extra}}}
""")
    return p


def _serving_record(tmp_path: Path, params: Path):
    from ascendeval import context

    run = context.open_section("performance", params, tmp_path / "run")
    run._env_summary = {}  # the environment probe is not what these tests are about
    plan = run.step("plan", setup.plan, run)
    result = run.step("serving", serving.serving, run, plan)
    rec = run.finish()
    rows_path = tmp_path / "run" / "records" / "performance.requests.jsonl"
    rows = [json.loads(x) for x in rows_path.read_text().splitlines()] if rows_path.exists() else []
    return result, rec, rows


def test_serving_server_dying_mid_run_is_a_failed_step_that_keeps_measured_requests(tmp_path):
    from ascendeval.simserver import SimServer, SimSpec

    # 1 warm-up + 5 measured requests complete, then the server drops every connection
    with SimServer(SimSpec(ttft_s=0.02, tpot_s=0.005, die_after=6)) as sim:
        result, rec, rows = _serving_record(tmp_path, _serving_params(tmp_path, sim.url))
    assert result is None and rec["status"] == "failed"
    step = rec["metrics"]["steps"]["serving"]
    assert step["status"] == "failed" and step["reason"].startswith("ServingFailed: ")
    assert "requests failed at rate=inf conc=2" in step["reason"]
    main = rec["metrics"]["serving"][0]
    assert main["num_requests"] == 10 and 1 <= main["completed_count"] < 10
    assert main["failed_count"] == 10 - main["completed_count"]
    measured = [r for r in rows if not r["warmup"]]
    assert len(measured) == 10
    ok = [r for r in measured if r["success"]]
    assert len(ok) == main["completed_count"]
    assert all(r["ttft_ms"] >= 20.0 and r["output_tokens"] == 4 for r in ok)  # real figures kept
    assert all(r["error"] for r in measured if not r["success"])
    assert "records/performance.requests.jsonl" in rec["artifacts"]


def test_serving_tolerates_failures_up_to_max_failed_fraction(tmp_path):
    from ascendeval.simserver import SimServer, SimSpec

    with SimServer(SimSpec(ttft_s=0.02, tpot_s=0.005, fail_every=5)) as sim:
        result, rec, rows = _serving_record(tmp_path, _serving_params(tmp_path, sim.url, max_failed_fraction=0.5))
    assert rec["metrics"]["steps"]["serving"]["status"] == "ok", rec["metrics"]["steps"]["serving"]
    points = rec["metrics"]["serving"]
    assert [p["sweep"] for p in points] == ["main", "concurrency"]
    assert all(p["failed_count"] >= 1 and p["completed_count"] + p["failed_count"] == 10 for p in points)
    assert all(list(p["errors"])[0].startswith("HTTP 500") for p in points)
    assert len([r for r in rows if not r["warmup"]]) == 20


def test_serving_repeats_pool_into_one_point_and_measure_the_noise(tmp_path):
    """Every point measured 3 times in rounds; a point pools its repeats (durations summed) and
    keeps each repeat's figures; the concurrency point with the main point's settings is compared
    with it against the repeats' spread; verify recomputes all of it and catches a changed repeat."""
    from ascendeval import verify
    from ascendeval.simserver import SimServer, SimSpec

    with SimServer(SimSpec(ttft_s=0.02, tpot_s=0.004)) as sim:
        result, rec, rows = _serving_record(tmp_path, _serving_params(tmp_path, sim.url, repeats=3))
    assert rec["metrics"]["steps"]["serving"]["status"] == "ok", rec["metrics"]["steps"]["serving"]
    main, conc = rec["metrics"]["serving"]
    measured = [r for r in rows if not r["warmup"]]
    # rounds: every point once per round, the first round in plan order, later ones shuffled
    order = [(r["sweep"], r["repeat"]) for r in measured]
    blocks = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert blocks[:2] == [("main", 0), ("concurrency", 0)]
    assert [sorted(b for b in blocks if b[1] == k) for k in (1, 2)] == [
        [("concurrency", k), ("main", k)] for k in (1, 2)] and len(blocks) == 6
    for pt in (main, conc):
        assert pt["num_requests"] == 30 and [r["repeat"] for r in pt["repeat_figures"]] == [0, 1, 2]
        assert pt["duration_s"] == pytest.approx(sum(r["duration_s"] for r in pt["repeat_figures"]))
        assert all(r["completed_count"] == 10 and r["median_ttft_ms"] >= 20.0 for r in pt["repeat_figures"])
    agreement = {a["compared_metric"]: a for a in rec["metrics"]["serving_agreement"]}
    tpot = agreement["median_tpot_ms"]
    assert tpot["first_point"] == "main" and tpot["second_point"] == "concurrency rate=inf conc=2"
    assert tpot["difference"] == pytest.approx(abs(main["median_tpot_ms"] - conc["median_tpot_ms"]))
    spreads = [max(v) - min(v) for v in ([r["median_tpot_ms"] for r in pt["repeat_figures"]] for pt in (main, conc))]
    assert tpot["repeat_spread"] == pytest.approx(max(spreads))
    assert tpot["within_noise"] == (tpot["difference"] <= tpot["repeat_spread"])
    run_dir = tmp_path / "run"
    assert verify.verify_run(run_dir).ok
    p = run_dir / "records" / "performance.json"
    changed = json.loads(p.read_text())
    # far outside both points' repeats, so the recomputed spread changes whichever point set it
    changed["metrics"]["serving"][0]["repeat_figures"][1]["median_tpot_ms"] += 1000.0
    p.write_text(json.dumps(changed))
    problems = verify.verify_run(run_dir).problems
    assert any("repeat_figures[1].median_tpot_ms" in x for x in problems), problems
    assert any("serving_agreement[median_tpot_ms" in x and "repeat_spread" in x for x in problems), problems


def test_card_warns_when_the_same_settings_disagree_beyond_the_noise(tmp_path):
    """The card's agreement table and the section's verdict: info while the two measurements agree,
    warn (with both values and the spread) when the record says they do not."""
    from ascendeval import report
    from ascendeval.simserver import SimServer, SimSpec

    with SimServer(SimSpec(ttft_s=0.02, tpot_s=0.004)) as sim:
        _, rec, _ = _serving_record(tmp_path, _serving_params(tmp_path, sim.url, repeats=2))
    run_dir = tmp_path / "run"
    for lang in ("en", "zh"):
        card = report.build_card(report.load_run(run_dir), lang).markdown
        assert report.L(lang, "agreement_intro") in card
    p = run_dir / "records" / "performance.json"
    changed = json.loads(p.read_text())
    main, conc = changed["metrics"]["serving"]
    # the other compared figures exactly the main point's (measured ones may differ by chance: a
    # simulated server on a busy host is noisy too), and TPOT as if every token had taken 1 s more
    for key in ("median_ttft_ms", "output_tok_per_s"):
        conc[key] = main[key]
        for r, m in zip(conc["repeat_figures"], main["repeat_figures"]):
            r[key] = m[key]
    for r in conc["repeat_figures"]:
        r["median_tpot_ms"] += 1000.0
    conc["median_tpot_ms"] += 1000.0
    changed["metrics"]["serving_agreement"] = serving.same_settings_agreement(changed["metrics"]["serving"])
    p.write_text(json.dumps(changed))
    data = report.load_run(run_dir)
    v = report.section_verdict(data, "performance")
    assert v.state == "warn", v
    assert v.note.startswith("Median TPOT (ms) of the same settings measured twice:"), v.note
    card = report.build_card(data, "en").markdown
    assert report.L("en", "agreement_off") in card and "❌" in card


def _point(sweep: str, tpots: list[float], conc: int | None = None) -> dict:
    reps = [{"repeat": k, "median_tpot_ms": t, "output_tok_per_s": 1000 / t, "median_ttft_ms": 100.0}
            for k, t in enumerate(tpots)]
    mid = sorted(tpots)[len(tpots) // 2]
    return {"sweep": sweep, "request_rate_label": "inf", "burstiness": 1.0, "max_concurrency": conc,
            "num_requests": 32 * len(tpots), "median_tpot_ms": mid, "output_tok_per_s": 1000 / mid,
            "median_ttft_ms": 100.0, "repeat_figures": reps}


def test_same_settings_that_differ_beyond_the_repeats_spread_do_not_agree():
    steady = serving.same_settings_agreement([_point("main", [8.0, 8.2, 8.1]), _point("rate", [8.3, 8.0, 8.1])])
    assert {a["compared_metric"]: a["within_noise"] for a in steady} == {
        "output_tok_per_s": True, "median_ttft_ms": True, "median_tpot_ms": True}
    apart = serving.same_settings_agreement([_point("main", [8.0, 8.2, 8.1]), _point("rate", [16.0, 16.4, 16.1])])
    tpot = next(a for a in apart if a["compared_metric"] == "median_tpot_ms")
    assert tpot["within_noise"] is False and tpot["difference"] == pytest.approx(8.0)
    assert tpot["repeat_spread"] == pytest.approx(0.4)
    # one repeat: no noise to compare against, so no decision either way
    single = serving.same_settings_agreement([_point("main", [8.0]), _point("rate", [16.0])])
    assert single and all(a["within_noise"] is None and a["repeat_spread"] is None for a in single)
    # different settings are not compared
    assert serving.same_settings_agreement([_point("main", [8.0, 9.0]), _point("concurrency", [8.0, 9.0], conc=4)]) == []


def test_serving_unreachable_endpoint_is_a_failed_step(tmp_path):
    result, rec, rows = _serving_record(tmp_path, _serving_params(tmp_path, "http://127.0.0.1:9"))
    step = rec["metrics"]["steps"]["serving"]
    assert result is None and rec["status"] == "failed" and step["status"] == "failed"
    assert step["reason"].startswith("EndpointError: endpoint http://127.0.0.1:9 unreachable")
    assert "performance.serving.url" in step["reason"] and rows == []


def test_roofline_reads_the_environment_records_roofline_block(tmp_path):
    from ascendeval import context, records

    params = _serving_params(tmp_path, "http://127.0.0.1:9")
    run = context.open_section("performance", params, tmp_path / "run")
    run._env_summary = {}
    # the environment section's block as env.roofline_inputs writes it; bf16 matmul not measured
    records.save(run.run_dir, records.Record(
        section="environment", status="ok", run_id=run.run_id, model={}, target={},
        metrics={"bandwidth": {"copy_bandwidth_gbps": 9.0},
                 "roofline": {"read_bandwidth_gbps": 20.0, "copy_bandwidth_gbps": 12.0,
                              "matmul_fp32_tflops": 0.5, "matmul_bf16_tflops": None}}))
    plan = run.step("plan", setup.plan, run)
    split = offline.SplitResult([{"batch_size": 1, "prefill_s": 0.5, "decode_tok_per_s": 100.0},
                              {"batch_size": 4, "prefill_s": 1.0, "decode_tok_per_s": 200.0}])
    roof = run.step("roofline", roofline.roofline, run, plan, split)
    v = roof.values
    assert v["bandwidth_key"] == "read_bandwidth_gbps" and v["measured_bandwidth_gbps"] == 20.0
    assert v["matmul_dtype_key"] == "matmul_fp32_tflops" and v["measured_matmul_tflops"] == 0.5
    assert v["batch_size"] == 4
    f, c = plan.model_facts, plan.conf.split
    step_bytes = f["weights_bytes"] + 4 * (c.decode_input_len + c.decode_output_len / 2) * f["kv_bytes_per_token"]
    assert v["decode_achieved_gbps"] == pytest.approx(step_bytes * 50.0 / 1e9)
    assert 0 < v["prefill_flops_utilization"] and v["prefill_achieved_tflops_per_s"] == pytest.approx(
        v["prefill_flops"] / 1.0 / 1e12)


def test_roofline_above_the_probe_is_not_a_utilisation(tmp_path):
    from ascendeval import context, records

    run = context.open_section("performance", _serving_params(tmp_path, "http://127.0.0.1:9"), tmp_path / "run")
    run._env_summary = {}
    # as measured here on an AVX2-only CPU: the plain-torch probe is far below the engine's kernels
    records.save(run.run_dir, records.Record(section="environment", status="ok", run_id=run.run_id, model={}, target={},
                                             metrics={"roofline": {"read_bandwidth_gbps": 1e-6, "matmul_bf16_tflops": 1e-9}}))
    plan = run.step("plan", setup.plan, run)
    roof = run.step("roofline", roofline.roofline, run, plan,
                    offline.SplitResult([{"batch_size": 1, "prefill_s": 0.5, "decode_tok_per_s": 100.0}]))
    v = roof.values
    assert v["prefill_flops_utilization"] is None and "does not bound" in v["prefill_flops_note"]
    assert v["decode_bandwidth_utilization"] is None and "fits in cache" in v["decode_bandwidth_note"]
    assert run.finish()["status"] == "ok"  # the record is saved: no impossible value in it


def test_steps_that_need_a_skipped_engine_are_skipped_not_failed(tmp_path):
    """A served-only target has no offline engine: the offline steps do not apply (skipped, with
    the reason), they are not failures."""
    import ascendeval
    from ascendeval.sections.performance import offline, roofline, setup

    params = tmp_path / "served.yaml"
    params.write_text("model: {id: 'builtin:tiny-qwen2-untrained', name: served}\n"
                      "target: {engine: openai}\nserver: {kind: external, url: 'http://127.0.0.1:9'}\n")
    run = ascendeval.open_section("performance", str(params), str(tmp_path / "run"))
    plan = run.step("plan", setup.plan, run)
    pe = run.step("engine", setup.open_engine, run)
    for name, fn in (("latency", offline.latency), ("throughput", offline.throughput),
                     ("prefill_decode", offline.prefill_decode), ("memory", offline.memory)):
        run.step(name, fn, run, pe, plan)
    run.step("roofline", roofline.roofline, run, plan, None)
    assert run.step_status("engine") == "skipped"
    for name in ("latency", "throughput", "prefill_decode", "memory"):
        assert run.steps[name]["status"] == "skipped", (name, run.steps[name])
        assert run.steps[name]["reason"].startswith("needs step 'engine', which skipped: offline measurements")
    assert run.steps["roofline"]["status"] == "skipped"
    assert "needs step 'prefill_decode', which skipped" in run.steps["roofline"]["reason"]
