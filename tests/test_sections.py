"""The section registry (ascendeval/sections/) is the one list of sections, and everything it
names exists: notebooks, config blocks, card renderers, verify rules, index metrics. Adding a
section is adding its package: config, runner, card, verify and index pick it up."""

from __future__ import annotations

from pathlib import Path

import pytest

from ascendeval import catalog, config, runner, sections
from ascendeval.report.text import card_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sec", sections.SECTIONS, ids=lambda s: s.name)
def test_what_each_section_names_exists(sec):
    assert (ROOT / "notebooks" / f"{sec.notebook}.ipynb").is_file()
    assert (ROOT / "notebooks" / f"{sec.notebook}.py").is_file()
    assert f'open_section("{sec.name}"' in (ROOT / "notebooks" / f"{sec.notebook}.py").read_text()
    assert sec.name in config.SectionsConfig.model_fields
    assert set(card_text()[sec.heading]) == {"en", "zh"}
    # what it registers lives in its own package
    for hook in (sec.card, sec.summary, sec.verify):
        if hook is not None:
            assert callable(hook) and hook.__module__.startswith(f"ascendeval.sections.{sec.name}.")
    assert sec.config.__module__ == f"ascendeval.sections.{sec.name}.config"
    for key, path in sec.index_metrics:
        assert catalog.get(key) is not None, key
        assert path.endswith(key)  # an attribute path of its metrics model, checked at registration


def test_every_module_reads_the_registry():
    assert config.SECTION_NAMES == sections.NAMES
    assert sections.NAMES == ("environment", "smoke", "performance", "precision", "quality", "features", "report")
    assert list(runner.SECTION_NOTEBOOKS) == list(sections.NAMES)
    assert set(runner.SERVED_SECTIONS) == {s.name for s in sections.SECTIONS if s.uses_shared_server}
    assert sections.JUDGED == sections.NAMES[:-1]


NEW_SECTION = {
    "__init__.py": '''
from ..base import Section
from . import card
from .config import ThroughputProbeConfig
from .metrics import ProbeMetrics

SECTION = Section("throughput_probe", "05b_throughput_probe", "sec_features", config=ThroughputProbeConfig,
                  card=card.render, summary=card.summary,
                  metrics=ProbeMetrics, index_metrics=(("output_tok_per_s", "probe.output_tok_per_s"),))
''',
    "config.py": '''
from pydantic import Field
from ...schema import Strict

class ThroughputProbeConfig(Strict):
    enabled: bool = True
    requests: int = Field(4, gt=0)
''',
    "metrics.py": '''
from ...schema import MetricsModel, SectionMetrics

class Probe(MetricsModel):
    output_tok_per_s: float | None

class ProbeMetrics(SectionMetrics):
    probe: Probe | None = None
''',
    "card.py": '''
def render(b):
    b.add("## Throughput probe", "probe part rendered")

from ...report.verdicts import Summary

def summary(m, params, lang):
    return Summary("pass", "probe verdict note") if m.probe.output_tok_per_s > 0 else Summary("fail")
''',
}


def test_adding_a_section_is_adding_its_package(tmp_path):
    """Copy the package, add one section package and nothing else: the params schema, the runner's
    notebook list, the card (part and verdict) and the index all know it."""
    import json
    import shutil
    import subprocess
    import sys

    pkg = tmp_path / "ascendeval"
    shutil.copytree(ROOT / "ascendeval", pkg, ignore=shutil.ignore_patterns("__pycache__", "corpus", "suites"))
    (pkg / "sections" / "throughput_probe").mkdir()
    for name, text in NEW_SECTION.items():
        (pkg / "sections" / "throughput_probe" / name).write_text(text.strip() + "\n")
    run = shutil.copytree(ROOT / "tests" / "fixtures" / "golden-run", tmp_path / "out" / "m" / "golden-run")
    rec = json.loads((run / "records" / "features.json").read_text())
    rec.update(section="throughput_probe", metrics={"probe": {"output_tok_per_s": 12.5}})
    (run / "records" / "throughput_probe.json").write_text(json.dumps(rec))
    code = f"""
import ascendeval, json
from ascendeval import config, runner, sections, report
assert ascendeval.__file__.startswith({str(tmp_path)!r}), ascendeval.__file__
cfg = config.parse({{"model": {{"id": "x"}}, "sections": {{"throughput_probe": {{"requests": 8}}}}}})
card = report.build_card(report.load_run({str(run)!r}), "en").markdown
rows = report.index_rows({str(tmp_path / "out")!r})
print(json.dumps({{"names": list(sections.NAMES), "requests": cfg.sections.throughput_probe.requests,
                  "notebook": runner.SECTION_NOTEBOOKS["throughput_probe"],
                  "part": "probe part rendered" in card, "verdict": "probe verdict note" in card,
                  "index": [r.get("v_throughput_probe") for r in rows]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["names"] == ["environment", "smoke", "performance", "precision", "quality", "features",
                            "throughput_probe", "report"]
    assert got["requests"] == 8 and got["notebook"] == "05b_throughput_probe.ipynb"
    assert got["part"] and got["verdict"] and got["index"] == ["pass"]


def test_unknown_section_is_one_clear_error():
    with pytest.raises(KeyError, match="unknown section 'benchmark'; allowed: environment, smoke"):
        sections.get("benchmark")


def test_index_paths_are_checked_against_the_metrics_model():
    from ascendeval.sections.base import Section
    from ascendeval.sections.smoke.config import SmokeConfig
    from ascendeval.sections.smoke.metrics import SmokeMetrics

    with pytest.raises(AttributeError, match="SmokeMetrics has no attribute path 'load.lod_s'"):
        Section("x", "99_x", "sec_smoke", config=SmokeConfig, metrics=SmokeMetrics,
                index_metrics=(("load_s", "load.lod_s"),))
    # a union member without the figure (vLLM's returned-logprobs scope) reads as not measured
    precision = sections.get("precision")
    m = precision.metrics.model_validate({"teacher_forced": {"scope": "target_returned", "top1_agreement": 0.5}})
    assert precision.read(m, "teacher_forced.mean_cosine") is None
    assert precision.read(m, "teacher_forced.top1_agreement") == 0.5
    assert precision.read(precision.metrics.model_validate({}), "teacher_forced.top1_agreement") is None
