"""The section registry (ascendeval/sections.py) is the one list of sections, and everything it
names exists: notebooks, config blocks, card renderers, verify rules, index metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from ascendeval import catalog, config, report, runner, sections, verify

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sec", sections.SECTIONS, ids=lambda s: s.name)
def test_what_each_section_names_exists(sec):
    assert (ROOT / "notebooks" / f"{sec.notebook}.ipynb").is_file()
    assert (ROOT / "notebooks" / f"{sec.notebook}.py").is_file()
    assert f'open_section("{sec.name}"' in (ROOT / "notebooks" / f"{sec.notebook}.py").read_text()
    assert sec.name in config.SectionsConfig.model_fields
    assert sec.heading in report.LABELS["en"] and sec.heading in report.LABELS["zh"]
    if sec.card:
        assert callable(getattr(report, sec.card))
    if sec.verify_rule:
        assert verify.RULES[sec.name] is getattr(verify, sec.verify_rule)
    for key, path in sec.index_metrics:
        assert catalog.get(key) is not None, key
        assert path.startswith("metrics.") and path.endswith(key)


def test_every_module_reads_the_registry():
    assert config.SECTION_NAMES == sections.NAMES == report.SECTIONS
    assert list(runner.SECTION_NOTEBOOKS) == list(sections.NAMES)
    assert set(runner.SERVED_SECTIONS) == {s.name for s in sections.SECTIONS if s.uses_shared_server}
    assert [k for k, _, _ in report.INDEX_METRICS] == [k for k, _, _ in sections.index_metrics()]
    assert sections.JUDGED == sections.NAMES[:-1]


def test_unknown_section_is_one_clear_error():
    with pytest.raises(KeyError, match="unknown section 'benchmark'; allowed: environment, smoke"):
        sections.get("benchmark")
