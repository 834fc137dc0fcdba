"""The metric catalog (ascendeval/data/metrics.yaml via catalog.py): every key a real record holds
is declared; what a key may hold comes from its declaration, never its spelling; every label in
the card comes from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ascendeval import catalog, records, report

GOLDEN = Path(__file__).parent / "fixtures" / "golden-run" / "records"
NOT_METRICS = frozenset({"steps", "engine_starts", "system", "params"})  # status, probe, echo of params


def _records():
    return {p.stem: records.upgrade(json.loads(p.read_text())) for p in sorted(GOLDEN.glob("*.json"))}


def test_the_catalog_loads_and_every_entry_is_complete():
    entries = catalog.catalog()
    assert len(entries) > 300
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for key, m in entries.items():
        assert m.kind in catalog.KINDS, key
        assert m.en.strip() and m.zh.strip(), key
        assert m.better in (None, "higher", "lower"), key
        assert cjk.search(m.zh) or m.zh.isascii() and m.zh.replace(" ", "").isupper() or m.zh == m.en, \
            f"{key}: Chinese label {m.zh!r}"


def test_every_key_of_every_real_record_is_declared():
    missing: dict[str, set[str]] = {}
    for name, rec in _records().items():
        miss = catalog.undeclared_keys(rec["metrics"], NOT_METRICS)
        if miss:
            missing[name] = miss
    for sidecar in sorted(GOLDEN.glob("*.jsonl")):
        for line in sidecar.read_text().splitlines():
            miss = catalog.undeclared_keys(json.loads(line))
            if miss:
                missing.setdefault(sidecar.name, set()).update(miss)
    assert missing == {}


def test_the_check_can_fail_on_an_undeclared_key():
    assert catalog.undeclared_keys({"a": {"made_up_metric_ms": 1.0}}) == {"made_up_metric_ms"}


def test_every_real_value_is_possible():
    for name, rec in _records().items():
        assert records.validate_metrics(rec["metrics"]) == [], name


# ---- the three bugs of key-name guessing, gone by construction


@pytest.mark.parametrize("rate", [3, 50, 0.5])
def test_a_request_rate_in_req_per_s_is_a_rate_not_a_fraction(rate):
    assert catalog.get("request_rate").kind == "rate"
    assert records.validate_metrics({"plan": {"effective": {"serving": {"request_rate": rate}}}}) == []


@pytest.mark.parametrize("key", ["num_requests", "num_prompts", "num_positions"])
def test_counts_named_num_are_checked_for_negative_values(key):
    problems = records.validate_metrics({key: -1})
    assert problems and "is negative" in problems[0]


def test_keys_with_the_unit_in_the_middle_are_checked_and_labelled():
    assert "is negative" in records.validate_metrics({"ttft_ms_min": -1.0})[0]
    assert "is negative" in records.validate_metrics({"ttft_ms_chunked_off": -1.0})[0]
    assert records.validate_metrics({"ttft_ms_min": 3.0, "ttft_ms": 4.0, "p50_ttft_ms": 4.0, "ttft_ms_max": 9.0}) == []
    order = records.validate_metrics({"ttft_ms_min": 12.0, "p50_ttft_ms": 10.0})
    assert order and "ttft_ms_min=12.0 > p50_ttft_ms=10.0" in order[0]
    assert report.metric_label("ttft_ms_min").endswith("(ms)")
    assert report.metric_label("ttft_ms_chunked_off").endswith("(ms)")


@pytest.mark.parametrize("metrics,fragment", [
    ({"mean_cosine": 1.0009}, "cosine 1.0009 outside [-1, 1]"),
    ({"top1_agreement": 1.2}, "fraction 1.2 outside [0, 1]"),
    ({"mean_ttft_ms": -3.0}, "is negative"),
    ({"p50_ttft_ms": 30.0, "p99_ttft_ms": 20.0}, "p50_ttft_ms=30.0 > p99_ttft_ms=20.0"),
    ({"mean_itl_ms": float("inf")}, "is not a number"),
])
def test_impossible_values_by_declared_kind(metrics, fragment):
    problems = records.validate_metrics(metrics)
    assert problems and fragment in problems[0]


def test_relative_changes_may_be_negative():
    assert records.validate_metrics({"output_tok_per_s_delta": -0.4, "startup_s_delta": 2.5}) == []


# ---- labels


BAD_LABELS = ("Mean cosine centered returned", "Logprob max abs returned", "Pd split", "Opscan",
              "Vllm custom ops native fallback", "TTFT ms min", "Rss after")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_label_in_the_card_is_a_raw_key(lang):
    data = report.load_run(GOLDEN.parent)
    text = report.build_card(data, lang).markdown
    raw = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
    first_cells = [line.split("|")[1].strip() for line in text.splitlines()
                   if line.startswith("|") and not set(line) <= set("|-: ") and line.count("|") > 2]
    # a declared key printed as itself instead of its label (package names such as torch_npu are names)
    offenders = [c for c in first_cells if raw.match(c) and c in catalog.catalog()]
    assert offenders == [], offenders[:10]
    for bad in BAD_LABELS:
        assert bad not in text


def test_label_frame_relabels_tables_and_passes_anything_else_through():
    import pandas as pd

    df = pd.DataFrame([{"mean_ttft_ms": 1.0, "not_a_metric_key_xyz": 2}])
    out = catalog.label_frame(df)
    assert list(out.columns) == ["Mean TTFT (ms)", "not_a_metric_key_xyz"]
    kv = pd.DataFrame({"value": [1, 2]}, index=["load_s", "other"])
    assert list(catalog.label_frame(kv).index) == ["Load time (s)", "other"]

    by_batch = pd.DataFrame({"mean_ttft_ms": [1.0]}, index=pd.Index([4], name="batch_size"))
    assert catalog.label_frame(by_batch).index.name == catalog.label("batch_size")

    class Image:  # what a plot step's .table() returns (IPython.display.Image)
        pass

    img = Image()
    assert catalog.label_frame(img) is img
