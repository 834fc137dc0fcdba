"""Pure parts of the features section: counter deltas, acceptance figures from vLLM's counter
definitions, the engine-timestamp split, length capping, capacity arithmetic, config checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ascendeval import config, metrics
from ascendeval.sections.features import capacity, common, long_context, prefix_cache, speculative
from ascendeval.sections.features.config import FeaturesConfig
from ascendeval.token_prompts import TokenPrompts


def test_counter_delta_scalars_vectors_and_labels():
    before = {"vllm:prefix_cache_hits": 10, "vllm:prefix_cache_queries": 40, "other": 5,
              "vllm:spec_decode_num_accepted_tokens_per_pos": [1, 0]}
    after = {"vllm:prefix_cache_hits": 74, "vllm:prefix_cache_queries": 140, "other": 9,
             "vllm:prefix_cache_hits{engine_extra=x}": 3,
             "vllm:spec_decode_num_accepted_tokens_per_pos": [5, 2, 1]}
    d = common.counter_delta(before, after, "vllm:prefix_cache")
    assert d == {"vllm:prefix_cache_hits": 64, "vllm:prefix_cache_queries": 100,
                 "vllm:prefix_cache_hits{engine_extra=x}": 3}
    assert common._sum_by_name(d, "vllm:prefix_cache_hits") == 67
    assert common._sum_by_name(d, "vllm:prefix_cache_hit") is None  # no prefix-matching of names
    v = common.counter_delta(before, after, "vllm:spec_decode")
    assert v["vllm:spec_decode_num_accepted_tokens_per_pos"] == [4, 2, 1]


def test_acceptance_follows_vllm_definitions():
    deltas = {"vllm:spec_decode_num_drafts": 10, "vllm:spec_decode_num_draft_tokens": 30,
              "vllm:spec_decode_num_accepted_tokens": 12,
              "vllm:spec_decode_num_accepted_tokens_per_pos": [7, 4, 1]}
    a = speculative.acceptance(deltas)
    assert a["acceptance_rate"] == pytest.approx(0.4)
    assert a["mean_acceptance_length"] == pytest.approx(2.2)  # 1 + 12/10, bonus token included
    assert a["per_position_acceptance_rate"] == pytest.approx([0.7, 0.4, 0.1])


def test_acceptance_without_drafts_is_not_measured_not_zero():
    a = speculative.acceptance({})
    assert a["acceptance_rate"] is None and a["mean_acceptance_length"] is None
    assert a["per_position_acceptance_rate"] is None
    assert common.safe_ratio(3, 0) is None and common.safe_ratio(None, 2) is None


def _out(n_out: int, **m):
    metrics = SimpleNamespace(**{"queued_ts": 0, "scheduled_ts": 0, "first_token_ts": 0, "last_token_ts": 0,
                                 "first_token_latency": 0.0, "num_preemptions": 0, **m})
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(range(n_out)))], prompt_token_ids=[1] * 100,
                           num_cached_tokens=32, metrics=metrics)


def test_request_timing_splits_engine_timestamps():
    r = common.request_timing(_out(11, queued_ts=10.0, scheduled_ts=10.01, first_token_ts=10.21,
                                     last_token_ts=10.71, first_token_latency=0.25, num_preemptions=1))
    assert r["queue_ms"] == pytest.approx(10) and r["prefill_ms"] == pytest.approx(200)
    assert r["decode_ms"] == pytest.approx(500) and r["tpot_ms"] == pytest.approx(50)
    assert r["ttft_ms"] == pytest.approx(250) and r["preemptions"] == 1
    assert r["prompt_tokens"] == 100 and r["output_tokens"] == 11 and r["num_cached_tokens"] == 32


def test_request_timing_without_stats_is_none():
    out = _out(4)
    out.metrics = None
    r = common.request_timing(out)
    assert r["prefill_ms"] is None and r["ttft_ms"] is None and r["tpot_ms"] is None


def test_context_lengths_cap_and_reach_the_limit():
    keep, dropped = long_context.context_lengths([256, 1024, 4096, 32768], 2048, 16, kv_tokens=None)
    assert keep == [256, 1024, 2032] and dropped == [4096, 32768]
    keep, dropped = long_context.context_lengths([256, 1024], 2048, 16, kv_tokens=None)
    assert keep == [256, 1024] and dropped == []
    keep, _ = long_context.context_lengths([256, 4096], 8192, 16, kv_tokens=1000)  # KV cache smaller than the model
    assert keep == [256, 984]


def test_max_concurrency_whole_blocks():
    assert capacity.max_concurrency(100, 16, 16) == 100
    assert capacity.max_concurrency(100, 16, 17) == 50
    assert capacity.max_concurrency(3, 128, 1024) == 0


def test_prefix_workload_shares_exactly_the_prefix():
    class Tok:
        all_special_ids = [0]
        vocab_size = 500

    tp = TokenPrompts(Tok(), seed=1)
    shared, prime = prefix_cache.prefix_workload(tp, 4, 100, 0.75, shared=True)
    assert all(len(p) == 100 for p in shared) and prime is not None and prime[:75] == shared[0][:75]
    assert all(p[:75] == shared[0][:75] for p in shared) and len({tuple(p[75:]) for p in shared}) == 4
    distinct, prime = prefix_cache.prefix_workload(tp, 4, 100, 0.75, shared=False)
    assert prime is None and len({tuple(p[:75]) for p in distinct}) == 4
    assert 0 not in {t for p in shared + distinct for t in p}  # no special tokens


def test_spec_config_and_copy_prompts():
    c = FeaturesConfig(num_speculative_tokens=5)
    assert speculative.spec_config(c, "ngram") == {"num_speculative_tokens": 5, "method": "ngram",
                                                "prompt_lookup_min": 2, "prompt_lookup_max": 4}
    c2 = FeaturesConfig(spec_methods=["ngram", "eagle"], spec_model="/m/eagle")
    assert speculative.spec_config(c2, "eagle") == {"num_speculative_tokens": 3, "method": "eagle", "model": "/m/eagle"}
    prompts = speculative.copy_prompts(3)
    assert len(prompts) == 3 and all("Copy:" in p for p in prompts)
    # the continuation is in the prompt: what prompt lookup can propose
    assert prompts[0].split("Copy: ")[1] in prompts[0].split("Text: ")[1]


def test_first_difference():
    assert metrics.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert metrics.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert metrics.first_difference([1, 2], [1, 2, 3]) == 2


@pytest.mark.parametrize("section, message", [
    ({"spec_methods": ["draft_model"]}, "need spec_model"),
    ({"pd_mixes": [[128, 0]]}, "pd_mixes"),
    ({"long_context_lengths": []}, "at least one length"),
    ({"prefix_shared_ratio": 1.0}, "prefix_shared_ratio"),
    ({"extra": {}}, "unknown key"),
    ({"ngram_prompt_lookup_min": 5, "ngram_prompt_lookup_max": 2}, "ngram_prompt_lookup_min"),
])
def test_bad_features_params_are_one_line_errors(section, message):
    with pytest.raises(config.ConfigError) as e:
        config.parse({"model": {"id": "builtin:tiny-qwen2-untrained"}, "sections": {"features": section}})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_features_defaults_and_lengths_sorted():
    c = config.parse({"model": {"id": "x/y"}, "sections": {"features": {"long_context_lengths": [4096, 256, 256]}}})
    f = c.sections.features
    assert f.long_context_lengths == [256, 4096] and f.spec_methods == ["ngram"] and f.kv_connector == "ExampleConnector"
