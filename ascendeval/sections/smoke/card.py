"""The smoke section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from ...report.builder import CardBuilder
from ...report.cells import fmt, get, md_table
from ...report.text import L, metric_label
from .metrics import SmokeMetrics


def render(b: CardBuilder) -> None:
    lang, d = b.lang, b.d
    b.add(f"## {L(lang, 'sec_smoke')}")
    if not b.status_line("smoke"):
        return
    m = d.rec("smoke")["metrics"]
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
        b.add(md_table([L(lang, "kind"), L(lang, "prompt"), L(lang, "output"), L(lang, "tokens"), L(lang, "latency_s")],
                       [(r.get("kind"), r.get("prompt"), r.get("output"), fmt(r.get("output_tokens")),
                         fmt(r.get("latency_s"), "latency_s")) for r in prompts]))
        b.kv_table("smoke", m.get("prompts"), kinds=["prompts"])
        b.image("artifacts/report_smoke_latency.png", "latency per prompt")
    rows = []
    for key, path in (("identical_rate", "determinism.identical_rate"), ("same_as_offline_rate", "served.same_as_offline_rate"),
                      ("mean_ttft_ms", "served.mean_ttft_ms"), ("requests", "served.requests")):
        v = get(m, path)
        if v is not None or get(m, path.split(".")[0]) is not None:
            rows.append((metric_label(key, lang), fmt(v, key)))
    if rows:
        b.add(f"### {L(lang, 'smoke_det')}", md_table([L(lang, "metric"), L(lang, "value")], rows),
              b.source("smoke", ["served"]))



def verdict(m: SmokeMetrics, lang: str) -> tuple[str, str]:
    """Pass unless greedy repeats differ or a prompt produced no text."""
    rate = m.determinism.identical_rate if m.determinism else None
    empty = (m.prompts.empty_outputs if m.prompts else None) or 0
    if rate is not None and rate < 1:
        return "warn", f"{metric_label('identical_rate', lang)} = {fmt(rate, 'identical_rate', lang)}"
    if empty:
        return "warn", f"{metric_label('empty_outputs', lang)} = {empty}"
    return "pass", ""
