"""The quality section's part of the model card (`render`) and its verdict rule (`verdict`)."""

from __future__ import annotations

from typing import Any

from ...report.builder import CardBuilder, plots_of
from ...report.cells import md_escape, fmt, get, md_table
from ...report.text import L, metric_label, verdict_label
from ...report.verdicts import Figure, Summary, figure
from .metrics import QualityMetrics


def render(b: CardBuilder) -> None:
    lang = b.lang
    m = b.open_part("quality")
    if m is None:
        return
    if isinstance(m.get("suites"), dict):
        _suites(b, m)
    bench = m.get("benchmarks")
    if isinstance(bench, dict) and bench:
        b.add(f"### {L(lang, 'qual_bench')}")
        rows = []
        for name, r in bench.items():
            if not isinstance(r, dict):
                continue
            scores = {k: v for k, v in r.items() if isinstance(v, dict) and "accuracy" in v}
            shown = metric_label(name, lang)  # the benchmark's own name (GSM8K, ARC-Challenge, ...)
            if not scores:
                rows.append((shown, "—", "—", "—", L(lang, r.get("status", "skipped")), r.get("reason") or ""))
            for method, s in scores.items():
                acc = fmt(s.get("accuracy"), "accuracy")
                if s.get("accuracy_stderr") is not None:
                    acc += f" ± {fmt(s['accuracy_stderr'], 'accuracy')}"
                rows.append((shown, method, acc, fmt(s.get("num_items")),
                             L(lang, r.get("status", "ok")), get(r, "provenance.source") or ""))
        b.add(md_table([L(lang, "metric"), L(lang, "method"), L(lang, "accuracy"), L(lang, "items"), L(lang, "status"),
                        L(lang, "note")], rows),
              b.source("quality", ["items"]))
    if isinstance(m.get("lm_eval"), dict):
        _lm_eval(b, m["lm_eval"], m.get("lm_eval_comparison"))
    bl = m.get("baselines")
    if isinstance(bl, list) and bl:
        b.add(f"### {L(lang, 'qual_baselines')}")
        b.add(md_table([L(lang, "metric"), L(lang, "measured"), L(lang, "baseline"), "Δ", L(lang, "source"),
                        L(lang, "verdict")],
                       [(r.get("metric"), fmt(r.get("measured"), "accuracy"), fmt(r.get("baseline"), "accuracy"),
                         fmt(r.get("diff_abs"), "diff"), r.get("label") or r.get("source"),
                         verdict_label({True: "pass", False: "fail"}.get(r.get("passed"), "none"), lang)
                         + (f" ({r['reason']})" if r.get("reason") else "")) for r in bl]), b.source("quality"))
    plots_of(b, "quality")



def _lm_eval(b: CardBuilder, lm: dict[str, Any], comp: dict[str, Any] | None) -> None:
    """lm-eval's scores beside the built-in scorers: task, `<metric>,<filter>`, value ± stderr,
    samples and shots; then each metric of a vLLM-Ascend accuracy config against them."""
    lang = b.lang
    h = lm.get("harness") or {}
    st = h.get("settings") or {}
    tasks = {t.get("task"): t for t in lm.get("tasks") or []}
    def shown(k: str, v: Any) -> str:
        if v is None:
            return L(lang, "lm_eval_task_default") if k == "num_fewshot" else L(lang, "lm_eval_all")
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)

    settings = ", ".join(f"{k} {shown(k, st.get(k))}" for k in ("num_fewshot", "limit", "apply_chat_template",
                                                                "fewshot_as_multiturn") if k in st)
    sources = sorted({t.get("data_source") for t in tasks.values() if t.get("data_source")})
    b.add(f"### {L(lang, 'qual_lm_eval')}")
    b.add(L(lang, "qual_lm_eval_intro", version=h.get("lm_eval_version"), model=h.get("model"), settings=settings,
            sources="; ".join(sources) or "—"))
    rows = []
    for r in lm.get("results") or []:
        t = tasks.get(r.get("task"), {})
        value = fmt(r.get("value"), "accuracy")
        if r.get("stderr") is not None:
            value += f" ± {fmt(r['stderr'], 'accuracy')}"
        rows.append((r.get("task"), r.get("key"), value, fmt(r.get("num_scored")), fmt(t.get("num_fewshot")),
                     _shots_from(t, lang)))
    b.add(md_table([L(lang, "task"), L(lang, "metric"), L(lang, "value"), L(lang, "items"), "n-shot",
                    metric_label("fewshot_source", lang)], rows), b.source("quality", ["lm_eval_samples"]))
    if h.get("cli_command"):
        b.add(L(lang, "qual_lm_eval_cli") + f"\n\n```bash\n{h['cli_command']}\n```")
    if isinstance(comp, dict):
        b.add(L(lang, "qual_lm_eval_vs", config=comp.get("config"), model=comp.get("model_name"), rtol=comp.get("rtol")))
        if comp.get("overridden_settings"):
            b.add(L(lang, "qual_lm_eval_overridden", names=", ".join(comp["overridden_settings"])))
        b.add(md_table([L(lang, "task"), L(lang, "metric"), L(lang, "measured"), metric_label("expected_value", lang),
                        L(lang, "verdict")],
                       [(r.get("task"), r.get("metric"), fmt(r.get("measured"), "accuracy"),
                         fmt(r.get("expected_value"), "accuracy"),
                         verdict_label({True: "pass", False: "fail"}.get(r.get("passed"), "none"), lang)
                         + (f" ({r['reason']})" if r.get("reason") else "")) for r in comp.get("rows") or []]),
              b.source("quality"))


def _shots_from(task: dict[str, Any], lang: str) -> str:
    """Where a task's few-shot examples came from, in the card's language."""
    f = task.get("fewshot_from") or {}
    kind = f.get("kind")
    if kind is None or task.get("is_group"):
        return task.get("fewshot_source") or ""
    if kind == "zero_shot" or not task.get("num_fewshot"):
        return L(lang, "lm_eval_zero_shot")
    return L(lang, f"lm_eval_shots_{kind}", split=f.get("data_split"), n=f.get("num_rows"))


def _suites(b: CardBuilder, m: dict[str, Any]) -> None:
    """Per suite, the target beside the reference engine on the same items (from the suites
    sidecar), then one example per suite with both outputs judged."""
    lang = b.lang
    rows = b.d.rows("quality", "suites")
    ref = m.get("reference") if isinstance(m.get("reference"), dict) else None
    b.add(f"### {L(lang, 'qual_suites')}")
    if ref:
        b.add(L(lang, "qual_vs_reference", engine=ref.get("engine"), dtype=ref.get("dtype"), device=ref.get("device"),
                generated=ref.get("generated_items", "—"), unknown=ref.get("not_generated_items", 0)))
        if "fallback" in str(ref.get("loaded_as") or ""):
            b.add(L(lang, "reference_fallback", how=ref["loaded_as"]))
    if not rows:
        b.kv_table("quality", m["suites"], kinds=["suites"])
        return
    def suite_name(suite: str) -> str:  # "QA suite" / "问答套件", from the catalog's pass-rate label
        return metric_label(f"{suite}_pass_rate", lang).removesuffix(" pass rate").removesuffix("通过率")

    table = []
    for suite in dict.fromkeys(r["suite"] for r in rows):
        items = [r for r in rows if r["suite"] == suite]
        def rate(key: str) -> float | None:  # over the items where it is known (None: not generated)
            known = [bool(r[key]) for r in items if r.get(key) is not None]
            return sum(known) / len(known) if known else None

        has_ref = all("reference_passed" in r for r in items)
        k = sum(1 for r in items if r.get("reference_passed") is not None)
        ref_cell = fmt(rate("reference_passed"), "pass_rate") + (f" (n = {k})" if k < len(items) else "")
        table.append((suite_name(suite), len(items), fmt(rate("passed"), "pass_rate"),
                      ref_cell if has_ref else "—",
                      fmt(rate("same_as_reference"), "same_output_rate") if has_ref else "—"))
    b.add(md_table([L(lang, "suite"), L(lang, "items"), L(lang, "target_pass"), L(lang, "reference_pass"),
                    metric_label("same_output_rate", lang)], table), b.source("quality", ["suites"]))
    examples = [next(r for r in rows if r["suite"] == s) for s in dict.fromkeys(r["suite"] for r in rows)]
    mark = lambda ok: "✅" if ok else "❌"  # noqa: E731
    b.add(f"#### {L(lang, 'qual_examples')}")
    b.add(md_table([L(lang, "suite"), L(lang, "prompt"), L(lang, "target_output"), L(lang, "reference_output")],
                   [(suite_name(r["suite"]), r["prompt"], f"{mark(r.get('passed'))} {md_escape(r.get('output'), 100)}",
                     f"{mark(r.get('reference_passed'))} {md_escape(r.get('reference_output'), 100)}"
                     if r.get("reference_output") is not None else "—") for r in examples]), b.source("quality", ["suites"]))


def summary(m: QualityMetrics, params: dict[str, Any], lang: str) -> Summary:
    """Baselines decide (any miss fails); without baselines the figures are information, each
    shown beside the reference's and with its number of items."""
    suites, ref = m.suites, m.reference
    ref_rate = ref.pass_rate if ref else None
    ref_name = f"{ref.engine} {ref.dtype}" if ref else "—"
    figures = []
    if suites is not None:
        known = getattr(ref, "pass_rate_items", None) if ref else None
        if ref and known is not None and known < suites.num_items:
            # the reference's rate covers only the items whose reference answer is known: the
            # target's beside it is over the same items
            shown = L(lang, "with_reference_known", value=fmt(suites.overall_pass_rate, "overall_pass_rate", lang),
                      ref=fmt(ref_rate, "overall_pass_rate", lang), k=known,
                      tgt=fmt(ref.target_pass_rate_same_items, "overall_pass_rate", lang))
        else:
            shown = L(lang, "with_reference", value=fmt(suites.overall_pass_rate, "overall_pass_rate", lang),
                      ref=fmt(ref_rate, "overall_pass_rate", lang)) if ref else None
        figures.append(figure("overall_pass_rate", suites.overall_pass_rate,
                              L(lang, "cond_suites", n=suites.num_items, mode=suites.mode, ref=ref_name), lang, shown))
    bench_bits = []
    for name, b in _benchmarks(m):
        for method in ("logprob", "generate", "pass_at_1"):
            score = getattr(b, method, None)
            acc = getattr(score, "accuracy", None)
            if acc is None:
                continue
            shown = f"{fmt(acc, 'accuracy', lang)} ± {fmt(score.accuracy_stderr, 'accuracy', lang)}"
            figures.append(Figure(metric_label(name, lang), shown,
                                  L(lang, "cond_bench", method=method, n=score.num_items)))
            bench_bits.append(f"{metric_label(name, lang)} {shown} (n = {score.num_items})")
            break  # one method per benchmark on the page; the report lists all
    figures += _lm_eval_figures(m, lang)
    bl = m.baselines or []
    if any(b.passed is False for b in bl):
        state, note = "fail", ", ".join(b.metric for b in bl if b.passed is False)
    elif bl and all(b.passed is True for b in bl):
        state, note = "pass", ""
    else:
        state, note = "info", L(lang, "no_threshold")
    sep = L(lang, "list_sep")
    bench = (sep + sep.join(bench_bits[:3])) if bench_bits else ""
    known = getattr(ref, "pass_rate_items", None) if ref else None
    if suites is not None and ref and known is not None and known < suites.num_items:
        sentence = L(lang, "s_quality_known", target=fmt(suites.overall_pass_rate, "overall_pass_rate", lang),
                     n=suites.num_items, k=known, ref=fmt(ref_rate, "overall_pass_rate", lang),
                     tgt=fmt(ref.target_pass_rate_same_items, "overall_pass_rate", lang), bench=bench)
    else:
        sentence = L(lang, "s_quality", target=fmt(suites.overall_pass_rate if suites else None, "overall_pass_rate",
                                                   lang),
                     ref=fmt(ref_rate, "overall_pass_rate", lang), n=suites.num_items if suites else 0, bench=bench)
    return Summary(state, note, figures, sentence)


def _lm_eval_figures(m: QualityMetrics, lang: str) -> list[Figure]:
    """The first metric of each task the params named, as lm-eval reports it."""
    lm = m.lm_eval
    if lm is None:
        return []
    shots = {t.task: t.num_fewshot for t in lm.tasks}
    out = []
    for task in lm.harness.settings.get("tasks") or []:
        r = next((r for r in lm.results if r.task == task and r.value is not None), None)
        if r is None:
            continue
        shown = fmt(r.value, "accuracy", lang) + (f" ± {fmt(r.stderr, 'accuracy', lang)}" if r.stderr is not None else "")
        out.append(Figure(f"{task} {r.key} (lm-eval)", shown,
                          L(lang, "cond_lm_eval", version=lm.harness.lm_eval_version, shots=shots.get(task),
                            n=r.num_scored)))
    return out


def _benchmarks(m: QualityMetrics) -> list[tuple[str, Any]]:
    """(name, block) of every benchmark that has a block, in the params' closed list order."""
    b = m.benchmarks
    return [(name, getattr(b, name)) for name in type(b).model_fields if getattr(b, name) is not None] if b else []
