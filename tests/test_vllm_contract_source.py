"""The seam's contract (engines/vllm_contract.py) read from vLLM's source, cross-checked against
the installed vLLM at run time, and the older shapes the checked versions have handled."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ascendeval.engines import vllm_compat, vllm_contract
from ascendeval.engines.vllm_contract import Item

ROOT = vllm_contract.installed_source_root()
ROWS = vllm_contract.check_source(ROOT)


def test_installed_vllm_meets_the_contract():
    missing = [r["item"] for r in ROWS if r["required"] and r["status"] != "present"]
    assert missing == []
    assert len(ROWS) == len(vllm_contract.CONTRACT) >= 90


@pytest.mark.parametrize("row", [r for r in ROWS if r["kind"] in ("name", "method", "module", "engine_arg")
                                 and r["status"] == "present"], ids=lambda r: r["item"])
def test_what_the_source_says_is_there_imports(row):
    """The AST reading agrees with the running vLLM."""
    module = importlib.import_module(row["where"])
    if row["kind"] == "module":
        return
    if row["kind"] == "engine_arg":
        assert row["item"].split(".", 1)[1] in {f.name for f in dataclasses.fields(module.EngineArgs)}
        return
    head, _, attr = row["item"].partition(".")
    obj = getattr(module, head)
    if attr:
        assert hasattr(obj, attr)


def test_the_checker_can_say_absent_and_changed():
    assert vllm_contract.check_item(ROOT, Item("RequestStateStats.no_such_field", "field",
                                               ("vllm.v1.metrics.stats",)))[0] == "absent"
    assert vllm_contract.check_item(ROOT, Item("MPClient.shutdown", "method", ("vllm.v1.engine.core_client",),
                                               param="no_such_param"))[0] == "changed"
    assert vllm_contract.check_item(ROOT, Item("EngineArgs.no_such_arg", "engine_arg",
                                               ("vllm.engine.arg_utils",)))[0] == "absent"
    assert vllm_contract.check_item(ROOT, Item("x", "name", ("vllm.no.such.module",)))[0] == "absent"
    assert vllm_contract.check_item(ROOT, Item("vllm:no_such_metric", "metric", ("vllm.v1.metrics.loggers",)))[0] \
        == "absent"


def test_checked_versions_and_their_absent_items_are_handled():
    doc = json.loads(vllm_contract.CHECKED_VERSIONS.read_text())
    assert {"0.18.0", "0.23.0", "0.32.0"} <= set(doc["versions"])
    handled = {"RequestStateStats.num_preemptions", "CacheConfig.kv_cache_size_tokens",
               "CacheConfig.kv_cache_max_concurrency"}  # each simulated in a test below / test_vllm_compat
    for v, res in doc["versions"].items():
        assert res["required_missing"] == [], v
        assert set(res["optional_not_present"]) <= handled, (v, res["optional_not_present"])


def test_cache_facts_on_a_config_without_the_newer_fields():
    """0.18 / 0.23 CacheConfig: no kv_cache_size_tokens / kv_cache_max_concurrency."""
    cfg = SimpleNamespace(cache_config=SimpleNamespace(num_gpu_blocks=100, block_size=16, enable_prefix_caching=True),
                          model_config=SimpleNamespace(max_model_len=400))
    facts = vllm_compat.cache_facts(cfg)
    assert facts["kv_cache_tokens"] == 1600 and facts["kv_cache_max_concurrency"] == 4.0


def test_shutdown_without_a_timeout_parameter():
    calls = []

    class OldClient:
        def shutdown(self):
            calls.append("old")

    class NewClient:
        def shutdown(self, timeout=None):
            calls.append(timeout)

    vllm_compat.shutdown(SimpleNamespace(llm_engine=SimpleNamespace(engine_core=OldClient())), 60)
    vllm_compat.shutdown(SimpleNamespace(llm_engine=SimpleNamespace(engine_core=NewClient())), 60)
    vllm_compat.shutdown(SimpleNamespace(), 60)  # no engine core at all: nothing to do
    assert calls == ["old", 60]


def test_verdicts():
    assert vllm_contract.verdict("0.32.0", ROWS)["verdict"] == "contract checked"
    assert vllm_contract.verdict("0.23.0+cpu", ROWS)["verdict"] == "contract checked"
    unknown = vllm_contract.verdict("0.99.0", ROWS)
    assert unknown["verdict"].startswith("untested version: ")
    broken = [dict(r, status="absent") if r["item"] == "LLM.generate" else r for r in ROWS]
    assert vllm_contract.verdict("0.32.0", broken)["verdict"] == "unsupported: 1 required items missing"
    assert vllm_contract.verdict(None)["verdict"] == "vLLM not installed"


def test_environment_probe_names_the_seam_verdict():
    from ascendeval.sections.environment import probe as env

    seam = env.vllm_seam_verdict()
    assert seam["vllm_version"] == vllm_compat.vllm_version()
    assert seam["verdict"] == "contract checked"


def test_bench_helpers_found_through_the_seam():
    api = vllm_compat.bench_api()
    for name in vllm_compat.BENCH_HELPERS:
        assert callable(getattr(api, name)) or isinstance(getattr(api, name), dict), name
    assert "vllm" in api.ASYNC_REQUEST_FUNCS


def test_the_contract_covers_every_engine_argument_the_params_emit():
    from ascendeval import config
    from ascendeval.engines.vllm_engine import engine_kwargs

    covered = set(vllm_contract.ENGINE_ARGS.split())
    for params in sorted((Path(__file__).resolve().parents[1] / "params").glob("*.yaml")):
        cfg = config.load(params)
        emitted = set(engine_kwargs(cfg.target, cfg.model))
        assert emitted <= covered, (params.name, emitted - covered)
