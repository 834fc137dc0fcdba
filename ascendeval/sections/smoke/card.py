"""The smoke section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ...report.builder import CardBuilder
from ...report.cells import fmt, get, md_table, opt
from ...report.text import L, metric_label
from ...report.verdicts import Summary, figure
from .metrics import SmokeMetrics
from .prompts import EXPECTED, as_expected


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    m = b.open_part("smoke")
    if m is None:
        return
    gates = {}
    for gate in ("dummy_gate", "load"):
        if isinstance(m.get(gate), dict):
            for k in ("load_s", "rss_bytes"):
                if k in m[gate]:
                    gates[f"{gate}.{k}"] = m[gate][k]
    kv = get(m, "load.engine_info.kv_cache_tokens")
    rows = [(f"{L(lang, k.split('.')[0])} · {metric_label(k.split('.')[-1], lang)}", fmt(v, k.split(".")[-1]))
            for k, v in gates.items()]
    if kv is not None:
        rows.append((metric_label("kv_cache_tokens", lang), fmt(kv, "kv_cache_tokens")))
    if rows:
        b.add(f"### {L(lang, 'smoke_gates')}", md_table([L(lang, "metric"), L(lang, "value")], rows), b.source("smoke"))
    prompts = d.rows("smoke", "prompts")
    if prompts:
        b.add(f"### {L(lang, 'smoke_prompts')}")
        b.add(md_table([L(lang, "kind"), L(lang, "prompt"), L(lang, "output"), L(lang, "judgement"), L(lang, "tokens"),
                        L(lang, "latency_s")],
                       [(r.get("kind"), r.get("prompt"), r.get("output"), judgement(r, lang), fmt(r.get("output_tokens")),
                         fmt(r.get("latency_s"), "latency_s")) for r in prompts]))
        b.kv_table("smoke", m.get("prompts"), kinds=["prompts"])
        b.image("artifacts/report_smoke_latency.png", L(lang, "latency_per_prompt"))
    rows = []
    for key, path in (("identical_rate", "determinism.identical_rate"), ("same_as_offline_rate", "served.same_as_offline_rate"),
                      ("mean_ttft_ms", "served.mean_ttft_ms"), ("requests", "served.requests")):
        v = get(m, path)
        if v is not None or get(m, path.split(".")[0]) is not None:
            rows.append((metric_label(key, lang), fmt(v, key)))
    if rows:
        b.add(f"### {L(lang, 'smoke_det')}", md_table([L(lang, "metric"), L(lang, "value")], rows),
              b.source("smoke", ["served"]))



def judgement(row: dict[str, Any], lang: str) -> str:
    """One line on one output: empty, broken characters, or whether it holds the expected answer
    (from the row; rows of older runs are judged by the same rule, steps.as_expected)."""
    output = str(row.get("output") or "")
    if not output.strip():
        return L(lang, "judge_empty")
    hit = row["as_expected"] if "as_expected" in row else as_expected(str(row.get("prompt")), output)
    want = " / ".join(EXPECTED.get(str(row.get("prompt")), ()))
    text = {True: L(lang, "judge_ok", expected=want), False: L(lang, "judge_miss", expected=want),
            None: L(lang, "judge_open")}[hit]
    return text + (" " + L(lang, "judge_bytes") if "\ufffd" in output else "")


def summary(m: SmokeMetrics, params: dict[str, Any], lang: str) -> Summary:
    """Pass unless a prompt produced no text or greedy repeats differ (warn)."""
    load = opt(m, "load.load_s")
    engine = opt(m, "load.engine_info.engine") or "—"
    dtype = opt(m, "load.engine_info.dtype")
    n = opt(m, "prompts.count") or 0
    empty = opt(m, "prompts.empty_outputs") or 0
    rate = opt(m, "determinism.identical_rate")
    # a served target was loaded by its server: no load time of ours to show
    cond = L(lang, "cond_load_shared") if opt(m, "load.served_by") else \
        L(lang, "cond_load", engine=engine, dtype=dtype or "—")
    figures = [figure("load_s", load, cond, lang)] if load is not None else []
    known, hits = opt(m, "prompts.expected_count"), opt(m, "prompts.as_expected_count")
    if known:
        figures.append(figure("as_expected_count", hits, L(lang, "cond_expected", n=known), lang,
                              shown=f"{hits} / {known}"))
    if m.prompts:
        figures.append(figure("empty_outputs", empty, L(lang, "cond_prompts", n=n), lang))
    if rate is not None:
        figures.append(figure("identical_rate", rate, L(lang, "cond_prompts", n=opt(m, "determinism.prompts")), lang))
    if opt(m, "served.same_as_offline_rate") is not None:
        figures.append(figure("same_as_offline_rate", m.served.same_as_offline_rate, L(lang, "cond_served"), lang))
    state, note = "pass", L(lang, "note_smoke", answered=n - empty, n=n, identical=fmt(rate, "identical_rate", lang))
    if rate is not None and rate < 1:
        state, note = "warn", f"{metric_label('identical_rate', lang)} = {fmt(rate, 'identical_rate', lang)}"
    if known and hits < known:
        state, note = "warn", L(lang, "note_expected", miss=known - hits, n=known)
    if empty:
        state, note = "warn", f"{metric_label('empty_outputs', lang)} = {empty}"
    sentence = L(lang, "s_smoke" if load is not None else "s_smoke_served", load=fmt(load, "load_s", lang) + " s",
                 answered=n - empty, n=n, identical=fmt(rate, "identical_rate", lang))
    if known:
        sentence += L(lang, "sentence_sep") + L(lang, "s_smoke_expected", hits=hits, known=known)
    return Summary(state, note, figures, sentence)
