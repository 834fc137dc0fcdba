"""metric_definitions: the same request rows under vLLM / SGLang / GuideLLM / AIPerf / EvalScope."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ascendeval import catalog
from ascendeval import metric_definitions as D
from ascendeval import metrics as M

GOLDEN = Path(__file__).parent / "fixtures" / "golden-run" / "records"
STATS = ("mean", "median", "p99")
FIGS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")


def row(ttft, gaps, tokens=None, chunk_tokens=None, max_tokens=None, success=True, warmup=False, index=0):
    """A performance.requests.jsonl row (times in ms) as RequestResult.row() writes it."""
    if chunk_tokens is None and tokens is None:
        chunk_tokens = [1] * (len(gaps) + 1)
    n = tokens if tokens is not None else (sum(chunk_tokens) if chunk_tokens else None)
    e2el = None if ttft is None else ttft + sum(gaps)
    return {"index": index, "warmup": warmup, "success": success, "error": None if success else "HTTP 500: x",
            "prompt_tokens": 10, "max_tokens": max_tokens if max_tokens is not None else (n or 16),
            "output_tokens": n, "usage_reported": n is not None, "num_chunks": len(gaps) + 1 if success else 0,
            "start_s": 0.0, "ttft_ms": ttft, "e2el_ms": e2el,
            "tpot_ms": None if not n or n <= 1 or ttft is None else (e2el - ttft) / (n - 1),
            "itl_ms": list(gaps), "chunk_tokens": chunk_tokens, "cached_tokens": None, "sweep": "main"}


def by_tool(rows):
    return {f["tool"]: f for f in D.per_tool_figures(rows)}


def finding(rows, name):
    figs = D.per_tool_figures(rows)
    return next(d for d in D.disagreements(rows, figs) if d["finding"] == name)


# ---------------------------------------------------------------- 1. vLLM row == our serving_metrics


def _golden_main_rows():
    rows = [json.loads(line) for line in (GOLDEN / "performance.requests.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("sweep") == "main"]


def _result(r):
    s = lambda v: None if v is None else v / 1000.0
    res = M.RequestResult(index=r["index"], prompt_tokens=r["prompt_tokens"], max_tokens=r["max_tokens"],
                          success=r["success"], start_s=r["start_s"], ttft_s=s(r["ttft_ms"]), e2el_s=s(r["e2el_ms"]),
                          itl_s=[g / 1000.0 for g in r["itl_ms"]], chunk_tokens=r["chunk_tokens"],
                          output_tokens=r["output_tokens"], num_chunks=r["num_chunks"], warmup=r["warmup"])
    return res


def test_vllm_definitions_reproduce_serving_metrics_and_the_golden_record():
    rows = _golden_main_rows()
    measured = [r for r in rows if not r["warmup"]]
    assert len(measured) == 48 and any(r["warmup"] for r in rows)  # warm-up rows are in the input
    ours = M.serving_metrics([_result(r) for r in measured], duration_s=1.0)
    recorded = json.loads((GOLDEN / "performance.json").read_text())["metrics"]["serving_main"]
    vllm = by_tool(rows)["vllm"]
    for fig in FIGS:
        for stat in STATS:
            key = f"{stat}_{fig}"
            assert vllm[key] == pytest.approx(ours[key], rel=1e-9, abs=1e-9), key
            assert vllm[key] == pytest.approx(recorded[key], rel=1e-9, abs=1e-9), key


def test_golden_trace_tools_equal_by_definition_agree_and_the_others_do_not():
    figs = by_tool(_golden_main_rows())
    v, a, g = figs["vllm"], figs["aiperf"], figs["guidellm"]
    for stat in STATS:  # AIPerf's ITL is vLLM's TPOT, request by request
        assert a[f"{stat}_itl_ms"] == pytest.approx(v[f"{stat}_tpot_ms"], rel=1e-12)
        assert a[f"{stat}_tpot_ms"] is None  # AIPerf defines no TPOT
    # GuideLLM's TPOT includes TTFT: larger than vLLM's on any trace with a TTFT > one decode step
    assert g["mean_tpot_ms"] > v["mean_tpot_ms"] * 1.01
    # its mean over all requests' last-token times / all tokens
    measured = [r for r in _golden_main_rows() if not r["warmup"]]
    assert g["mean_tpot_ms"] == pytest.approx(sum(r["e2el_ms"] for r in measured)
                                              / sum(r["output_tokens"] for r in measured), rel=1e-12)


# ---------------------------------------------------------------- 2. multi-token chunks, by hand


def _spec_trace():
    # A: 8 tokens in chunks [1, 3, 3, 1], gaps 30, 60, 10 ms; B: 3 tokens one per chunk, gaps 20, 20
    return [row(100.0, [30.0, 60.0, 10.0], chunk_tokens=[1, 3, 3, 1], index=0),
            row(50.0, [20.0, 20.0], chunk_tokens=[1, 1, 1], index=1)]


def test_per_chunk_and_per_token_itl_by_hand():
    f = by_tool(_spec_trace())
    chunk_gaps = [30.0, 60.0, 10.0, 20.0, 20.0]
    # per chunk (vLLM, SGLang OpenAI backends, EvalScope): one sample per chunk gap
    assert f["vllm"]["mean_itl_ms"] == pytest.approx(28.0)
    assert f["vllm"]["median_itl_ms"] == pytest.approx(20.0)
    assert f["vllm"]["p99_itl_ms"] == pytest.approx(30.0 + 0.96 * 30.0)  # linear between 30 and 60
    assert f["sglang_oai"]["mean_itl_ms"] == pytest.approx(28.0)
    assert f["evalscope"]["mean_itl_ms"] == pytest.approx(28.0)
    assert f["evalscope"]["median_itl_ms"] == 20.0  # sorted[int(5 * 0.5)] = sorted[2]
    assert f["evalscope"]["p99_itl_ms"] == 60.0  # sorted[int(4.95)] = the maximum, no interpolation
    # per token (SGLang native): the gap 30 ends a 3-token chunk -> 10 ms x3, 60 ends a 3-token chunk
    # -> 20 ms x3, 10 ends a 1-token chunk -> 10 ms; B: 20, 20
    token_gaps = [10.0] * 3 + [20.0] * 3 + [10.0] + [20.0, 20.0]
    assert f["sglang"]["mean_itl_ms"] == pytest.approx(sum(chunk_gaps) / 9)
    assert f["sglang"]["mean_itl_ms"] == pytest.approx(np.mean(token_gaps))
    assert f["sglang"]["median_itl_ms"] == pytest.approx(np.median(token_gaps))
    assert f["sglang"]["p99_itl_ms"] == pytest.approx(np.percentile(token_gaps, 99))
    # TPOT: vLLM per request (E2EL - TTFT)/(n - 1): A 100/7, B 40/2; GuideLLM: last token / n, token-weighted
    assert f["vllm"]["mean_tpot_ms"] == pytest.approx((100 / 7 + 20.0) / 2)
    assert f["guidellm"]["mean_tpot_ms"] == pytest.approx((200.0 + 90.0) / (8 + 3))
    # GuideLLM ITL = the vLLM TPOT of each request weighted by n - 1 = all decode time / decode tokens
    assert f["guidellm"]["mean_itl_ms"] == pytest.approx((100.0 + 40.0) / (7 + 2))
    assert f["guidellm"]["median_itl_ms"] == pytest.approx(100 / 7)  # weight 7 of 9 at 14.29 ms
    assert f["guidellm"]["p99_itl_ms"] == pytest.approx(20.0)
    # AIPerf ITL: one per-request value each, linear percentiles
    assert f["aiperf"]["median_itl_ms"] == pytest.approx((100 / 7 + 20.0) / 2)
    assert f["aiperf"]["p99_itl_ms"] == pytest.approx(100 / 7 + 0.99 * (20.0 - 100 / 7))


def test_disagreements_report_per_chunk_vs_per_token_itl():
    d = finding(_spec_trace(), "itl_per_chunk_vs_per_token")
    assert d["differs"] is True
    assert d["figures_by_tool"]["vllm.mean_itl_ms"] == pytest.approx(28.0)
    assert d["figures_by_tool"]["sglang.mean_itl_ms"] == pytest.approx(140.0 / 9)
    assert d["relative_difference"] == pytest.approx((140.0 / 9 - 28.0) / 28.0)
    assert "differ" in d["message"] and "2 chunks carry more than one token" in d["message"]
    assert "相差" in d["message_zh"] and "2 个 chunk" in d["message_zh"]


def test_one_token_per_chunk_trace_tools_equal_by_definition_agree():
    rows = [row(100.0, [10.0, 20.0, 30.0], index=0), row(50.0, [15.0, 15.0, 15.0], index=1)]
    f = by_tool(rows)
    for stat in STATS:
        for fig in FIGS:  # SGLang's OpenAI backends divide by max_tokens, which here is the output length
            assert f["sglang_oai"][f"{stat}_{fig}"] == pytest.approx(f["vllm"][f"{stat}_{fig}"])
        # one token per chunk: the per-token gaps are the chunk gaps
        assert f["sglang"][f"{stat}_itl_ms"] == pytest.approx(f["vllm"][f"{stat}_itl_ms"])
        assert f["aiperf"][f"{stat}_itl_ms"] == pytest.approx(f["vllm"][f"{stat}_tpot_ms"])
    assert f["evalscope"]["mean_tpot_ms"] == pytest.approx(f["vllm"]["mean_tpot_ms"])
    assert f["guidellm"]["mean_itl_ms"] == pytest.approx(f["vllm"]["mean_tpot_ms"])  # equal lengths
    figs = D.per_tool_figures(rows)
    found = {d["finding"]: d for d in D.disagreements(rows, figs)}
    for name in ("itl_per_chunk_vs_per_token", "one_token_requests_in_tpot", "requested_vs_actual_tokens",
                 "request_mean_vs_token_weighted"):
        assert found[name]["differs"] is False, name
        assert "agree" in found[name]["message"] and "一致" in found[name]["message_zh"], name
    # TPOT with TTFT inside is a different quantity on every trace with a real TTFT
    assert found["tpot_includes_ttft"]["differs"] is True
    assert found["tpot_includes_ttft"]["figures_by_tool"]["guidellm.mean_tpot_ms"] == pytest.approx(
        (160.0 + 95.0) / 8)


# ---------------------------------------------------------------- 3. 1-token, failed, warm-up rows


def _mixed_trace():
    a = row(100.0, [10.0, 20.0, 30.0], index=0)  # 4 tokens, TPOT 20 ms
    one = row(40.0, [], tokens=1, chunk_tokens=[1], max_tokens=16, index=1)  # a 1-token answer
    failed = row(None, [], tokens=None, chunk_tokens=None, success=False, index=2)
    warm = row(9000.0, [900.0, 900.0], warmup=True, index=-1)  # would dominate every figure if counted
    return [warm, a, one, failed]


def test_one_token_failed_and_warmup_rows_per_tool():
    f = by_tool(_mixed_trace())
    # no tool counts failed or warm-up requests in these figures
    for tool, figs in f.items():
        assert figs["mean_ttft_ms"] == pytest.approx(70.0), tool  # (100 + 40) / 2
        assert figs["mean_e2el_ms"] == pytest.approx((160.0 + 40.0) / 2), tool
    # vLLM / SGLang native: the 1-token request has no TPOT
    assert f["vllm"]["mean_tpot_ms"] == pytest.approx(20.0)
    assert f["sglang"]["mean_tpot_ms"] == pytest.approx(20.0)
    # EvalScope: it stays in with TPOT 0
    assert f["evalscope"]["mean_tpot_ms"] == pytest.approx(10.0)
    assert f["evalscope"]["median_tpot_ms"] == pytest.approx(20.0)  # sorted [0, 20][int(1)]
    # SGLang OpenAI backends: divisor max_tokens - 1 = 15, numerator 0 (one chunk) -> 0 ms, kept
    assert f["sglang_oai"]["mean_tpot_ms"] == pytest.approx(10.0)
    # GuideLLM: TPOT defined from one token (40 ms / 1, weight 1); ITL weight 0 drops it
    assert f["guidellm"]["mean_tpot_ms"] == pytest.approx((160.0 + 40.0) / (4 + 1))
    assert f["guidellm"]["mean_itl_ms"] == pytest.approx(20.0)
    # AIPerf: OSL < 2 has no ITL
    assert f["aiperf"]["mean_itl_ms"] == pytest.approx(20.0)
    # chunk gaps: only request A has any
    assert f["vllm"]["mean_itl_ms"] == pytest.approx(20.0)
    d = finding(_mixed_trace(), "one_token_requests_in_tpot")
    assert d["differs"] is True and d["relative_difference"] == pytest.approx(-0.5)
    assert "1 requests have one output token" in d["message"]
    assert finding(_mixed_trace(), "requested_vs_actual_tokens")["differs"] is True


def test_a_row_without_usage():
    rows = [row(100.0, [10.0, 20.0, 30.0], index=0), row(50.0, [20.0, 20.0], tokens=None, index=1)]
    rows[1]["output_tokens"], rows[1]["usage_reported"], rows[1]["chunk_tokens"] = None, False, None
    f = by_tool(rows)
    assert f["vllm"]["mean_tpot_ms"] == pytest.approx(20.0)  # vLLM would re-tokenize: left out here
    assert f["aiperf"]["mean_itl_ms"] == pytest.approx(20.0)
    # GuideLLM falls back to one token per iteration (3 chunks): last-token times over 4 + 3 tokens
    assert f["guidellm"]["mean_tpot_ms"] == pytest.approx((160.0 + 90.0) / (4 + 3))
    assert f["sglang"]["mean_itl_ms"] is None  # per-token gaps need the tokens of every chunk


def test_empty_input_is_not_measured():
    rows = [row(None, [], tokens=None, chunk_tokens=None, success=False)]
    for figs in D.per_tool_figures(rows):
        assert all(figs[f"{s}_{f}"] is None for s in STATS for f in FIGS)
    assert all(d["differs"] is None for d in D.disagreements(rows, D.per_tool_figures(rows)))


# ---------------------------------------------------------------- the definitions and the catalog


def test_every_definition_is_cited_and_described_in_both_languages():
    names = [d.name for d in D.DEFINITIONS]
    assert names == [f["tool"] for f in D.per_tool_figures(_spec_trace())]
    for d in D.DEFINITIONS:
        assert set(d.metrics) == set(FIGS), d.name
        assert d.sources and all("::" in s and ("commit" in s or "tag v" in s) for s in d.sources), d.name
        for fig, md in d.metrics.items():
            assert md.en.strip() and any("\u4e00" <= ch <= "\u9fff" for ch in md.zh), (d.name, fig)
    assert not D.AIPERF.metrics["tpot_ms"].defined


def test_every_key_emitted_is_in_the_catalog():
    rows = _spec_trace()
    figs = D.per_tool_figures(rows)
    out = {"figures": figs, "disagreements": D.disagreements(rows, figs)}
    assert catalog.undeclared_keys(out) == set()
    assert catalog.get("tool").values and set(catalog.get("tool").values) == {d.name for d in D.DEFINITIONS}
    assert set(catalog.get("finding").values) == {d["finding"] for d in out["disagreements"]}
