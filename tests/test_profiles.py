"""Run profiles (ascendeval/profiles.py, data/profiles.yaml): one word sets every section's counts,
explicit params win, the records and the card say which profile ran and what it decided."""

from __future__ import annotations

import pytest

from ascendeval import config, profiles
from ascendeval.report import card as card_mod

BASE = {"model": {"id": "builtin:tiny-qwen2"}}


@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_every_profile_validates_and_says_what_it_is(name):
    cfg = config.parse({**BASE, "profile": name})
    assert cfg.profile == name
    for lang in ("en", "zh"):
        assert profiles.describe(name, lang).startswith(name)
    # every key the profile names exists in the config: an unknown one would have failed parse()
    assert len(cfg.profile_keys) == len(set(cfg.profile_keys))


def test_default_is_standard_and_standard_is_the_defaults_less_two_comparison_engines():
    cfg = config.parse(BASE)
    assert cfg.profile == "standard"
    assert cfg.profile_keys == ["features.chunked_prefill_off", "features.spec_served"]
    assert cfg.sections.model_dump() == config.parse({**BASE, "profile": "standard"}).sections.model_dump()
    full = config.parse({**BASE, "profile": "full"}).sections.features
    assert full.spec_served and full.chunked_prefill_off  # the full profile keeps both A/Bs
    assert not cfg.sections.features.spec_served and not cfg.sections.features.chunked_prefill_off


def test_quick_is_smaller_and_full_larger_than_standard_for_each_section():
    q, s, f = (config.parse({**BASE, "profile": n}).sections for n in ("quick", "standard", "full"))
    assert q.performance.serving.num_prompts < s.performance.serving.num_prompts < f.performance.serving.num_prompts
    assert q.performance.latency.iters < s.performance.latency.iters < f.performance.latency.iters
    assert (q.precision.max_prompts or 99) < 99 and q.precision.deployment.enabled is False
    assert f.precision.max_new_tokens > s.precision.max_new_tokens
    assert q.quality.suite_max_items == 2 and s.quality.suite_max_items is None
    assert all(b.n == 2 for b in q.quality.benchmarks) and all(b.n == 100 for b in f.quality.benchmarks)
    assert [b.name for b in q.quality.benchmarks] == [b.name for b in s.quality.benchmarks]
    assert q.quality.reference_gallery < s.quality.reference_gallery and f.quality.reference_gallery is None
    assert q.features.long_context_repeats < s.features.long_context_repeats < f.features.long_context_repeats
    assert q.smoke.dummy_gate is False and s.smoke.dummy_gate is True
    assert f.performance.reduced.above_params is None  # full means full, whatever the model size


def test_explicit_params_override_the_profile_even_an_explicit_null():
    data = {**BASE, "profile": "quick",
            "sections": {"quality": {"suite_max_items": None, "benchmarks": [{"name": "gsm8k", "n": 5},
                                                                              {"name": "mmlu"}]},
                         "performance": {"serving": {"num_prompts": 12}}}}
    cfg = config.parse(data)
    q = cfg.sections.quality
    assert q.suite_max_items is None  # explicit null is a setting
    assert [(b.name, b.n) for b in q.benchmarks] == [("gsm8k", 5), ("mmlu", 2)]  # each: only where unset
    assert cfg.sections.performance.serving.num_prompts == 12
    assert cfg.sections.performance.serving.repeats == 1  # the profile, where the params are silent
    assert "quality.suite_max_items" not in cfg.profile_keys
    assert "performance.serving.num_prompts" not in cfg.profile_keys
    assert "performance.serving.repeats" in cfg.profile_keys and "quality.benchmarks[1].n" in cfg.profile_keys


def test_unknown_profile_is_one_line_naming_the_allowed():
    with pytest.raises(config.ConfigError) as exc:
        config.parse({**BASE, "profile": "fast"})
    msg = str(exc.value)
    assert "\n" not in msg and "profile" in msg and "'fast'" in msg
    assert all(n in msg for n in profiles.PROFILE_NAMES)


def test_a_bad_section_value_is_still_the_params_error_under_a_profile():
    with pytest.raises(config.ConfigError) as exc:
        config.parse({**BASE, "profile": "quick", "sections": {"quality": "many"}})
    assert "sections.quality" in str(exc.value)


def test_records_and_card_name_the_profile(tmp_path):
    from ascendeval import context, records

    params = tmp_path / "p.yaml"
    params.write_text("profile: quick\nmodel: {id: builtin:tiny-qwen2, name: tq}\n"
                      "sections: {quality: {suite_max_items: 3}}\n", encoding="utf-8")
    run = context.open_section("quality", params, tmp_path / "run")
    rec = run.finish()
    prof = rec["params"]["profile"]
    assert prof["name"] == "quick"
    assert "quality.reference_gallery" in prof["keys"] and "quality.suite_max_items" not in prof["keys"]
    assert all(k.startswith("quality.") for k in prof["keys"])
    assert records.validate_record(rec) == []

    from ascendeval import report

    data = report.load_run(tmp_path / "run")
    facts = card_mod.profile_facts(data, "en")
    assert facts["profile"] == "quick" and facts["profile_keys"] == len(prof["keys"])
    for lang in ("en", "zh"):
        for text in (report.build_card(data, lang).markdown, report.build_page(data, lang).markdown):
            assert profiles.describe("quick", lang) in text
