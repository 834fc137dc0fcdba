"""Typed record metrics (sections/<name>/metrics.py on schema.MetricsModel): every real record fits
its section's model, an undeclared key or a wrong type is named with its path, the exported JSON
Schema checks a record without this package, and the models and the metric catalog cannot drift
apart."""

from __future__ import annotations

import copy
import importlib
import json
import math
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import jsonschema
import pytest
from pydantic import BaseModel

from ascendeval import catalog, records
from ascendeval.schema import MetricsModel, metrics_problems, record_json_schema

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden-run" / "records"
SECTIONS = ("environment", "smoke", "performance", "precision", "quality", "features", "report")


def _model(section: str) -> type[BaseModel]:
    module = importlib.import_module(f"ascendeval.sections.{section}.metrics")
    return getattr(module, f"{section.capitalize()}Metrics")


MODELS = {s: _model(s) for s in SECTIONS}


def _golden(section: str) -> dict[str, Any]:
    # the fixture is a schema-1 run: read as every reader reads it, through records.upgrade
    return records.upgrade(json.loads((GOLDEN / f"{section}.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = record_json_schema(MODELS, records.SCHEMA_VERSION)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --------------------------------------------------------------------------- real records


def test_the_golden_run_has_one_record_per_section():
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(SECTIONS)


@pytest.mark.parametrize("section", SECTIONS)
def test_every_golden_record_fits_its_section_model(section):
    rec = _golden(section)
    assert rec["section"] == section
    assert metrics_problems(MODELS[section], rec["metrics"]) == []


@pytest.mark.parametrize("section", SECTIONS)
def test_every_block_is_optional(section):
    # a section whose steps all failed or were skipped, or the runner's own envelope, has no blocks
    assert metrics_problems(MODELS[section], {}) == []
    steps = {"only": {"status": "skipped", "reason": "not on this target", "wall_s": 0.0}}
    assert metrics_problems(MODELS[section], {"steps": steps}) == []


# --------------------------------------------------------------------------- problems, with paths


@pytest.mark.parametrize("section, path, where", [
    ("performance", ("serving_main",), "metrics.serving_main.made_up_ms"),
    ("performance", ("serving", 3), "metrics.serving[3].made_up_ms"),
    ("performance", ("graph_vs_eager", "graph_vs_eager_delta"), "metrics.graph_vs_eager.graph_vs_eager_delta.made_up_ms"),
    ("smoke", ("load", "engine_info"), "metrics.load.engine_info.made_up_ms"),  # inside a tagged union
    ("features", ("speculative", "ngram"), "metrics.speculative.ngram.made_up_ms"),
    ("features", ("long_context", "points", 0), "metrics.long_context.points[0].made_up_ms"),
    ("quality", ("benchmarks", "mmlu", "logprob"), "metrics.benchmarks.mmlu.logprob.made_up_ms"),
    ("quality", ("benchmarks",), "metrics.benchmarks.made_up_ms"),
    ("precision", ("teacher_forced",), "metrics.teacher_forced.made_up_ms"),
    ("precision", ("verdict", "checks", 2), "metrics.verdict.checks[2].made_up_ms"),
    ("environment", ("system", "cpu"), "metrics.system.cpu.made_up_ms"),
    ("report", ("verify",), "metrics.verify.made_up_ms"),
    ("report", (), "metrics.made_up_ms"),
])
def test_an_undeclared_key_is_reported_with_its_dotted_path(section, path, where):
    metrics = copy.deepcopy(_golden(section)["metrics"])
    block = metrics
    for part in path:
        block = block[part]
    block["made_up_ms"] = 1.0
    assert metrics_problems(MODELS[section], metrics) == [f"{where}: Extra inputs are not permitted"]


def test_wrong_types_are_reported():
    metrics = copy.deepcopy(_golden("performance")["metrics"])
    metrics["serving_main"]["p99_ttft_ms"] = "368.5"  # a number written as text
    metrics["serving"][1]["completed_count"] = True  # a flag where a count belongs
    metrics["latency"]["iters_count"] = 5.0  # a float where an int belongs
    metrics["memory"]["rss_bytes"] = None  # always measured: null is not allowed
    metrics["serving_main"]["sweep"] = "ramp"  # not a sweep kind
    assert metrics_problems(MODELS["performance"], metrics) == [
        "metrics.latency.iters_count: Input should be a valid integer",
        "metrics.memory.rss_bytes: Input should be a valid integer",
        "metrics.serving[1].completed_count: Input should be a valid integer",
        "metrics.serving_main.p99_ttft_ms: Input should be a valid number",
        "metrics.serving_main.sweep: Input should be 'main', 'rate' or 'concurrency'",
    ]


def test_a_missing_key_is_not_measured_and_a_bad_union_tag_is_reported():
    metrics = copy.deepcopy(_golden("smoke")["metrics"])
    del metrics["load"]["load_s"]  # absent = not measured, like null: a writer that measured less fits
    assert metrics_problems(MODELS["smoke"], metrics, where="smoke") == []
    metrics["load"]["engine_info"]["engine"] = "sglang"
    problems = metrics_problems(MODELS["smoke"], metrics, where="smoke")
    assert len(problems) == 1
    assert problems[0].startswith("smoke.load.engine_info: Input tag 'sglang' found using 'engine' does not match")


def test_a_float_field_takes_an_int():
    metrics = copy.deepcopy(_golden("smoke")["metrics"])
    metrics["load"]["load_s"] = 3  # a whole number of seconds is still seconds
    assert metrics_problems(MODELS["smoke"], metrics) == []


# --------------------------------------------------------------------------- writer outputs the golden run lacks


def test_serving_metrics_without_usage_and_with_failures_fit_a_serving_point():
    from ascendeval import loadgen
    from ascendeval.metrics import RequestResult
    from ascendeval.sections.performance.metrics import ServingPoint, ServingSweepPoint

    ok = RequestResult(index=0, prompt_tokens=8, max_tokens=4, success=True, start_s=0.0, ttft_s=0.01,
                       e2el_s=0.05, itl_s=[0.01, 0.01, 0.02], output_tokens=None)  # no usage reported
    bad = RequestResult(index=1, prompt_tokens=8, max_tokens=4, error="HTTP 500: boom")
    lr = loadgen.LoadRun(loadgen.LoadSpec(request_rate=2.0, max_concurrency=4), [ok, bad], [], 0.5, 0.0)
    m = lr.metrics({"ttft": 50.0})
    m["sweep"] = "rate"
    m = records.to_jsonable(m)
    assert m["total_output_tokens"] is None and m["errors"] == {"HTTP 500: boom": 1}
    assert metrics_problems(ServingSweepPoint, m) == []
    main = {k: v for k, v in m.items() if k != "errors"}
    assert metrics_problems(ServingPoint, main) == []
    assert metrics_problems(ServingPoint, m) == ["metrics.errors: Extra inputs are not permitted"]


def test_both_teacher_forced_scopes_fit():
    import torch

    from ascendeval import precision_metrics as pm
    from ascendeval.sections.precision.metrics import PrecisionMetrics

    gen = torch.Generator().manual_seed(0)
    ref, tgt = torch.randn(6, 40, generator=gen), torch.randn(6, 40, generator=gen)
    nxt = [1, 2, 3, 4, 5, 6]
    cols = pm.full_vocab_metrics(ref, tgt, nxt, k=5)
    full_rows = [{k: v[i].item() for k, v in cols.items()} for i in range(6)]
    full = {**pm.summarize_positions(full_rows, pm.SCOPE_FULL), "num_prompts": 1, "wall_s": 0.1}
    returned_rows = []
    for i in range(6):
        top = torch.log_softmax(tgt[i], -1).topk(5)
        entries = {int(t): float(v) for t, v in zip(top.indices, top.values)}
        entries[nxt[i]] = float(torch.log_softmax(tgt[i], -1)[nxt[i]])
        returned_rows.append(pm.returned_entries_metrics(ref[i], entries, nxt[i], k=5))
    returned = {**pm.summarize_positions(returned_rows, pm.SCOPE_RETURNED), "num_prompts": 1,
                "target_logprobs_requested": 5, "wall_s": 0.1}
    for tf in (full, returned):
        assert metrics_problems(PrecisionMetrics, records.to_jsonable({"teacher_forced": tf})) == []
    # the keys of one scope are not allowed under the other
    mixed = {**returned, "mean_kl": 0.1}
    assert metrics_problems(PrecisionMetrics, {"teacher_forced": mixed}) == [
        "metrics.teacher_forced.mean_kl: Extra inputs are not permitted"]


def test_failed_and_skipped_entries_inside_blocks_fit():
    from ascendeval.sections.environment import probe
    from ascendeval.sections.features import speculative

    # a speculative method whose engine did not start, next to one that ran without counters
    no_counters = speculative.acceptance({})
    assert set(no_counters.values()) == {None}
    spec = {"baseline": {"elapsed_s": 1.0, "output_tokens": 8, "output_tok_per_s": 8.0}, "num_prompts": 2,
            "draft_model": {"status": "failed", "reason": "ValueError: no draft"},
            "ngram": {"status": "ok", "speculative_config": speculative.spec_config(
                types.SimpleNamespace(num_speculative_tokens=3, ngram_prompt_lookup_min=2,
                                      ngram_prompt_lookup_max=4), "ngram"),
                      **no_counters, "elapsed_s": 1.0, "output_tokens": 8, "output_tok_per_s": 8.0,
                      "e2e_speedup": 1.0, "same_as_baseline_outputs": 2, "same_as_baseline_rate": 1.0}}
    assert metrics_problems(MODELS["features"], {"speculative": spec}) == []
    # a benchmark with no data source, a logprob method that does not apply, baselines not judged
    bench = {"ceval": {"status": "skipped", "reason": "no source", "provenance": {}},
             "mmlu": {"status": "ok", "reason": None,
                      "provenance": {"benchmark": "mmlu", "source": "local:/x", "version": "abc", "total_items": 9,
                                     "num_items": 2, "seed": None, "items_sha256": "f"},
                      "logprob": {"status": "skipped", "reason": "engine openai gives no prompt logprobs"},
                      "generate": {"accuracy": 0.5, "accuracy_stderr": None, "num_items": 2, "num_correct": 1}}}
    baselines = [{"metric": "gsm8k", "source_kind": "run", "source": "r1", "label": "measured run r1",
                  "passed": None, "reason": "gsm8k not measured in this run"}]
    assert metrics_problems(MODELS["quality"], {"benchmarks": bench, "baselines": baselines}) == []
    # a skipped benchmark carries no provenance
    bench["ceval"]["provenance"] = {"benchmark": "ceval"}
    assert metrics_problems(MODELS["quality"], {"benchmarks": bench}) == [
        "metrics.benchmarks.ceval.provenance.benchmark: Extra inputs are not permitted"]
    # probes skipped: the notebook still adds the (null) blocks and the all-null roofline
    env = {"bandwidth": None, "matmul": None, "roofline": probe.roofline_inputs(None, None)}
    assert metrics_problems(MODELS["environment"], env) == []


def _literal_values(annotation: Any) -> set[str]:
    return {v for leaf in _leaf_types(annotation) for v in get_args(leaf)}


def test_blocks_keyed_by_configured_names_follow_the_config():
    """Benchmarks, suites and speculative methods come from closed name lists in the params; the
    models declare one field per name, so a name added to the config must be added here too."""
    from ascendeval.sections.features.config import FeaturesConfig
    from ascendeval.sections.features.metrics import Speculative
    from ascendeval.sections.quality.config import QualityBenchmarkConfig, QualityConfig
    from ascendeval.sections.quality.metrics import Benchmarks, Suites

    assert set(Benchmarks.model_fields) == _literal_values(QualityBenchmarkConfig.model_fields["name"].annotation)
    suites = _literal_values(QualityConfig.model_fields["suites"].annotation)
    assert {f for f in Suites.model_fields if f.endswith("_pass_rate")} == {f"{s}_pass_rate" for s in suites | {"overall"}}
    methods = _literal_values(FeaturesConfig.model_fields["spec_methods"].annotation)
    assert set(Speculative.model_fields) - {"baseline", "num_prompts"} == methods


# --------------------------------------------------------------------------- JSON Schema


@pytest.mark.parametrize("section", SECTIONS)
def test_the_json_schema_accepts_every_golden_record(validator, section):
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(_golden(section))]
    assert errors == []


def test_the_json_schema_rejects_what_the_models_reject(validator):
    rec = _golden("performance")
    rec["metrics"]["serving_main"]["made_up_ms"] = 1.0
    err = jsonschema.exceptions.best_match(validator.iter_errors(rec))
    assert list(err.absolute_path) == ["metrics", "serving_main"]
    assert "'made_up_ms' was unexpected" in err.message

    rec = _golden("features")
    rec["metrics"]["speculative"]["ngram"]["acceptance_rate"] = "0.3"
    assert not validator.is_valid(rec)

    # metrics are checked against the model of the record's own section
    rec = _golden("smoke")
    rec["metrics"] = _golden("report")["metrics"]
    assert not validator.is_valid(rec)

    # the envelope: version, status, the reason a skipped record owes, no unknown fields
    for change in ({"schema_version": records.SCHEMA_VERSION + 1}, {"status": "done"},
                   {"status": "skipped", "reason": None}, {"section": "speed"}, {"extra_field": 1}):
        rec = {**_golden("report"), **change}
        assert not validator.is_valid(rec), change
    assert validator.is_valid({**_golden("report"), "status": "skipped", "reason": "not on this target"})


# --------------------------------------------------------------------------- models vs catalog


def _leaf_types(tp: Any):
    origin = get_origin(tp)
    if origin is Annotated:
        yield from _leaf_types(get_args(tp)[0])
    elif origin in (Union, types.UnionType, list):
        for arg in get_args(tp):
            yield from _leaf_types(arg)
    elif origin is dict:
        yield from _leaf_types(get_args(tp)[1])
    else:
        yield tp


def _walk_models(roots: Any = None) -> tuple[dict[str, dict[str, set[str]]], set[str]]:
    """({"number" | "bool" | "str": field name -> models holding such a leaf}, outside
    catalog-exempt blocks; every field name of every block)."""
    leaves: dict[str, dict[str, set[str]]] = {"number": {}, "bool": {}, "str": {}}
    names: set[str] = set()
    seen: set[type] = set()
    kinds = {int: "number", float: "number", bool: "bool", str: "str"}

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            key = field.alias or name
            names.add(key)
            for leaf in _leaf_types(field.annotation):
                if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                    walk(leaf)
                elif leaf in kinds and not getattr(model, "catalog_exempt", None):
                    leaves[kinds[leaf]].setdefault(key, set()).add(model.__name__)

    for m in roots or MODELS.values():
        walk(m)
    return leaves, names


def test_every_model_is_strict_at_every_level():
    seen: list[type] = []

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        assert issubclass(model, MetricsModel), model
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("strict"), model
        for field in model.model_fields.values():
            for leaf in _leaf_types(field.annotation):
                if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                    walk(leaf)

    for m in MODELS.values():
        walk(m)
    assert len(seen) > 60


def test_every_numeric_field_is_a_catalog_key():
    numeric = _walk_models()[0]["number"]
    assert len(numeric) > 250
    undeclared = {k: sorted(v) for k, v in numeric.items() if catalog.get(k) is None}
    assert undeclared == {}


def test_field_types_agree_with_catalog_kinds():
    """A number is never declared as text or a flag, a flag is declared as one, a text field is
    text (or a list of texts, or a setting echoed from the params)."""
    leaves, _ = _walk_models()
    wrong = []
    for key in leaves["number"]:
        # data_map: the values of an open mapping (error message -> count)
        m = catalog.get(key)
        if m is None or m.kind in ("text", "flag", "mapping"):
            wrong.append((key, "number", m and m.kind))
    for key in leaves["bool"]:
        m = catalog.get(key)
        if m is None or m.kind != "flag":
            wrong.append((key, "bool", m and m.kind))
    for key in leaves["str"]:
        m = catalog.get(key)
        if m is None or m.kind not in ("text", "list", "setting"):
            wrong.append((key, "str", m and m.kind))
    assert wrong == []


def test_the_cross_check_finds_an_undeclared_numeric_field_in_a_nested_block():
    class Inner(MetricsModel):
        mean_ttft_ms: float | None
        made_up_ms: list[float] | None
        label: str

    class Outer(MetricsModel):
        points: dict[str, Inner] | None = None
        made_up_count: int

    leaves, names = _walk_models([Outer])
    assert sorted(k for k in leaves["number"] if catalog.get(k) is None) == ["made_up_count", "made_up_ms"]
    assert "label" in names and "label" in leaves["str"] and "label" not in leaves["number"]


# Catalog keys that belong to no record model: they name per-request / per-item sidecar columns
# or display-table columns the golden run's sidecars do not hold (other configurations), or
# values the record leaves out.
NOT_IN_RECORDS = {
    # precision positions sidecar, full_vocab scope (the golden target is vllm: returned scope)
    "cosine", "kl", "max_abs", "mse",
    # precision reference table (Reference.table)
    "continuation_tokens", "reference_continuation",
    # features disaggregated_requests sidecar (disaggregated prefill is off in the golden run)
    "decode_first_token_ms", "disagg_tpot_ms", "disagg_ttft_ms", "kv_transfer_params_returned",
    "prefill_instance_ms", "single_engine_ttft_ms", "single_tpot_ms", "single_ttft_ms",
    # quality suite_table / gallery columns
    "reference_pass_rate", "same_output", "same_output_as_reference", "target_output", "target_pass_rate",
    "reference_known_items",
    # smoke served sidecar: the golden run's smoke asks the shared server (target_via auto), so its
    # offline-vs-served comparison is skipped there
    "same_as_offline",
    # quality suites sidecar: only agreeing items the gallery generated carry it (none in the golden run)
    "reference_confirms_teacher_forced",
    # device.engine_device_memory returns it; performance.memory leaves it out
    "matched_pids",
    # quality check specs (data/suites/*.jsonl `check` objects)
    "tol",
    # the performance verdict's capacity figures (card.summary), labels for a record's capacity answer
    "capacity_rate_req_per_s", "capacity_concurrency",
    # telemetry samples' device fields (telemetry.Sampler): read on NPU / CUDA hosts only
    "device_t_s", "device_read_s", "device_chips", "mem_used_bytes", "util_percent",
}


def test_every_catalog_key_is_in_a_model_or_accounted_for():
    _, names = _walk_models()
    plain = {k for k, m in catalog.catalog().items() if m.stem is None}  # family members are generated

    def keys(obj: Any, acc: set[str]) -> set[str]:
        if isinstance(obj, dict):
            for k, v in obj.items():
                acc.add(k)
                keys(v, acc)
        elif isinstance(obj, list):
            for v in obj:
                keys(v, acc)
        return acc

    # keys of the golden run's sidecars (per-request rows) and of the open blocks of its records
    # (performance.plan.effective echoes the section's params)
    sidecar = set()
    for p in GOLDEN.glob("*.jsonl"):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                keys(json.loads(line), sidecar)
    echoed = keys(_golden("performance")["metrics"]["plan"]["effective"], set())
    unaccounted = plain - names - sidecar - echoed - NOT_IN_RECORDS
    assert unaccounted == set()
    # and the exception list holds nothing a model or the golden run already covers
    assert NOT_IN_RECORDS & (names | sidecar | echoed) == set()
    assert NOT_IN_RECORDS <= plain


# --------------------------------------------------------------------------- a real writer


def test_the_environment_section_writes_a_record_that_fits(tmp_path, validator):
    from ascendeval import context
    from ascendeval.sections.environment import probe as env

    params = tmp_path / "env.yaml"
    params.write_text("""
model: {id: "builtin:tiny-qwen2-untrained"}
target: {engine: hf, device: cpu}
sections:
  environment: {bandwidth_mib: 8, matmul_sizes: [32, 64], matmul_dtypes: [float32, float16],
                matmul_budget_s: 2.0, probe_repeats: 2}
""")
    # as notebooks/00_environment.py does it
    run = context.open_section("environment", params, tmp_path / "run")
    probe = run.step("probe", env.probe)
    run.step("params_advisories", env.params_advisories_step, run)
    target = run.step("target_device", env.target_device_info, run)
    bandwidth = run.step("bandwidth", env.bandwidth_probe, run)
    matmul = run.step("matmul", env.matmul_probe, run)
    run.add("system", env.for_record(probe))
    run.add("target_device", target)
    run.add("bandwidth", bandwidth)
    run.add("matmul", matmul)
    run.add("roofline", env.roofline_inputs(bandwidth, matmul))
    rec = run.finish()
    assert rec["status"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert m["matmul"]["matmul_fp16_best_size"] in (32, 64) and m["bandwidth"]["buffer_mib"] == 8
    assert math.isfinite(m["roofline"]["read_bandwidth_gbps"])
    assert metrics_problems(MODELS["environment"], m) == []
    assert list(validator.iter_errors(rec)) == []
