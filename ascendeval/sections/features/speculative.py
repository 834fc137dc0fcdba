"""Speculative decoding: ngram (and a draft model / EAGLE head when named) vs the main engine,
acceptance from the `vllm:spec_decode_*` counters, speed-up offline and served, greedy identity."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ... import metrics as metrics_mod
from ...context import SectionRun, SectionSkipped
from ...engines import Sampling
from ...output_guard import OutputGuard
from .common import (
    CORPUS,
    Main,
    Table,
    _need,
    _need_vllm,
    _sum_by_name,
    _vector_by_name,
    counter_delta,
    keep,
    keep_served,
    safe_ratio,
    scrape_metrics,
)


def copy_prompts(n: int) -> list[str]:
    """Prompts whose continuation is text already in the prompt (editing / quoting / RAG): the
    workload prompt-lookup (ngram) speculation is made for. Built from the shipped corpus."""
    paras = [p.strip() for p in CORPUS.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    out = []
    for i in range(n):
        para = paras[i % len(paras)]
        half = para[: len(para) // 2]
        out.append(f"Copy the text exactly.\nText: {para}\nCopy: {half}")
    return out


def spec_config(conf: Any, method: str) -> dict[str, Any]:
    """vLLM's `speculative_config` for one method (see vllm/config/speculative.py)."""
    cfg: dict[str, Any] = {"num_speculative_tokens": conf.num_speculative_tokens}
    if method == "ngram":
        cfg.update(method="ngram", prompt_lookup_min=conf.ngram_prompt_lookup_min,
                   prompt_lookup_max=conf.ngram_prompt_lookup_max)
    elif method == "draft_model":
        cfg.update(method="draft_model", model=conf.spec_model)
    else:
        cfg.update(method=method, model=conf.spec_model)
    return cfg


def acceptance(deltas: dict[str, Any]) -> dict[str, Any]:
    """Acceptance figures from the engine's spec-decode counters (vLLM's own definitions in
    vllm/v1/spec_decode/metrics.py): rate = accepted / draft tokens, mean acceptance length =
    1 + accepted / drafts (the bonus token counted), per position = accepted_at_pos / drafts."""
    drafts = _sum_by_name(deltas, "vllm:spec_decode_num_drafts")
    draft_tokens = _sum_by_name(deltas, "vllm:spec_decode_num_draft_tokens")
    accepted = _sum_by_name(deltas, "vllm:spec_decode_num_accepted_tokens")
    per_pos = _vector_by_name(deltas, "vllm:spec_decode_num_accepted_tokens_per_pos")
    return {
        "num_drafts": drafts, "num_draft_tokens": draft_tokens, "num_accepted_tokens": accepted,
        "acceptance_rate": safe_ratio(accepted, draft_tokens),
        "mean_acceptance_length": (1 + accepted / drafts) if drafts and accepted is not None else None,
        "per_position_acceptance_rate": [x / drafts for x in per_pos] if per_pos and drafts else None,
    }


def _timed_greedy(eng: Any, prompts: list[str], max_tokens: int) -> tuple[list[Any], list[float]]:
    """Each prompt alone (speculation is a latency feature), greedy, not ignoring EOS so the
    identity check compares what users would get."""
    sp = eng.sampling_params(Sampling(max_tokens=max_tokens))
    outs, walls = [], []
    for p in prompts:
        t0 = time.perf_counter()
        outs.append(eng.llm.generate([p], sp, use_tqdm=False)[0])
        walls.append(time.perf_counter() - t0)
    return outs, walls


@dataclass
class SpecBaseline:
    """Greedy outputs and per-prompt wall times without speculation, from the main engine."""

    prompts: list[str]
    outs: list[Any]
    walls: list[float]
    guard: OutputGuard | None = None


def speculative_baseline(run: SectionRun, main: Main | None) -> SpecBaseline:
    """The no-speculation arm, on the main engine while it is open."""
    c = run.conf
    if not c.speculative:
        raise SectionSkipped("speculative: false in params", zh="参数文件中设置了 speculative: false")
    m = _need(main)
    prompts = copy_prompts(c.spec_num_prompts)
    _timed_greedy(m.engine, prompts[:1], 4)  # warm-up: first-call overheads out of the baseline
    outs, walls = _timed_greedy(m.engine, prompts, c.spec_output_len)
    keep(m.guard, "speculative", outs, ignore_eos=False)
    return SpecBaseline(prompts, outs, walls, m.guard)


def speculative(run: SectionRun, base: SpecBaseline | None) -> Table:
    """Each method's engine against the baseline, started after the main engine is closed (one
    vLLM engine at a time)."""
    c = run.conf
    if not c.speculative:
        raise SectionSkipped("speculative: false in params", zh="参数文件中设置了 speculative: false")
    if base is None:
        raise SectionSkipped("the baseline without speculation did not run (see step 'speculative_baseline')",
                             zh="不开启投机解码的基线未运行（见步骤 'speculative_baseline'）")
    prompts, base_outs, base_walls = base.prompts, base.outs, base.walls
    base_tokens = sum(len(o.outputs[0].token_ids) for o in base_outs)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"baseline": {"elapsed_s": sum(base_walls), "output_tokens": base_tokens,
                                            "output_tok_per_s": base_tokens / sum(base_walls)}}
    failures = {}
    for method in c.spec_methods:
        try:
            eng = run.engine(f"features-spec-{method}", speculative_config=spec_config(c, method))
        except Exception as exc:  # noqa: BLE001 - one method failing must not hide the others
            failures[method] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            summary[method] = {"status": "failed", "reason": failures[method]}
            continue
        try:
            _timed_greedy(eng, prompts[:1], 4)
            before = eng.metrics()
            outs, walls = _timed_greedy(eng, prompts, c.spec_output_len)
            keep(base.guard, "speculative", outs, ignore_eos=False)
            acc = acceptance(counter_delta(before, eng.metrics(), "vllm:spec_decode"))
        finally:
            eng.close()
        n_tok = sum(len(o.outputs[0].token_ids) for o in outs)
        same = 0
        for i, (a, b, wa, wb) in enumerate(zip(base_outs, outs, base_walls, walls)):
            pos = metrics_mod.first_difference(list(a.outputs[0].token_ids), list(b.outputs[0].token_ids))
            same += pos is None
            rows.append({"method": method, "prompt": i, "baseline_ms": wa * 1000, "spec_ms": wb * 1000,
                         "speedup": safe_ratio(wa, wb), "identical": pos is None, "first_diff_position": pos,
                         "baseline_tokens": len(a.outputs[0].token_ids), "spec_tokens": len(b.outputs[0].token_ids)})
        summary[method] = {"status": "ok", "speculative_config": spec_config(c, method), **acc,
                           "elapsed_s": sum(walls), "output_tokens": n_tok, "output_tok_per_s": n_tok / sum(walls),
                           "e2e_speedup": safe_ratio(sum(base_walls), sum(walls)),
                           "same_as_baseline_outputs": same, "same_as_baseline_rate": same / len(prompts)}
    summary["num_prompts"] = len(prompts)
    run.save_rows("speculative_requests", rows)
    run.add("speculative", summary)
    if failures and len(failures) == len(c.spec_methods):
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in failures.items()))
    table = [{"method": k, **{kk: v.get(kk) for kk in ("status", "acceptance_rate", "mean_acceptance_length",
                                                       "per_position_acceptance_rate", "output_tok_per_s",
                                                       "e2e_speedup", "same_as_baseline_rate", "reason")}}
             for k, v in summary.items() if isinstance(v, dict) and k != "baseline"]
    return Table("speculative", table, summary)


def _served_arm(run: SectionRun, url: str, prompts: list[str], max_tokens: int) -> tuple[dict[str, Any], Any]:
    from ... import loadgen

    name = loadgen.list_models(url, run.cfg.server.api_key)[0]
    ep = loadgen.Endpoint(url, name, api_key=run.cfg.server.api_key, ignore_eos=False)
    # one request at a time: speculation trades compute for latency, at batch 1 it shows best
    lr = loadgen.run_load(ep, prompts, max_tokens, loadgen.LoadSpec(max_concurrency=1), warmup_requests=1)
    return lr.metrics(), lr


def speculative_served(run: SectionRun, guard: OutputGuard | None = None) -> Table:
    """The same A/B through the OpenAI API: a server without and one with ngram speculation,
    measured with the performance section's streaming client (vLLM's metric definitions)."""
    c = run.conf
    if not (c.speculative and c.spec_served):
        raise SectionSkipped("speculative / spec_served: false (params file or its profile)",
                             zh="参数文件或其运行档位设置了 speculative / spec_served: false")
    _need_vllm(run)
    if run.cfg.server.kind != "vllm" or run.cfg.server.url:
        raise SectionSkipped("needs servers started here (server.kind vllm, no server.url): the A/B toggles "
                             "the server's speculative_config",
                             zh="需要在此处启动的服务（server.kind 为 vllm，且未设置 server.url）："
                             "A/B 对比需要切换服务的 speculative_config")
    prompts = copy_prompts(c.spec_served_num_prompts)
    keys = ("mean_ttft_ms", "mean_tpot_ms", "mean_e2el_ms", "output_tok_per_s", "completed_count", "failed_count")
    with run.served("features-served-base") as url:
        base, base_lr = _served_arm(run, url, prompts, c.spec_output_len)
    with run.served("features-served-ngram", speculative_config=spec_config(c, "ngram")) as url:
        before = scrape_metrics(url)
        spec, spec_lr = _served_arm(run, url, prompts, c.spec_output_len)
        acc = acceptance(counter_delta(before, scrape_metrics(url), "vllm:spec_decode"))
    keep_served(run, guard, "speculative_served", base_lr.results + spec_lr.results, prompts, ignore_eos=False)
    run.save_rows("speculative_served_requests", base_lr.rows(arm="baseline") + spec_lr.rows(arm="ngram"))
    summary = {"baseline": {k: base.get(k) for k in keys}, "ngram": {**{k: spec.get(k) for k in keys}, **acc},
               "e2el_speedup": safe_ratio(base.get("mean_e2el_ms"), spec.get("mean_e2el_ms")),
               "tpot_speedup": safe_ratio(base.get("mean_tpot_ms"), spec.get("mean_tpot_ms")),
               "num_prompts": len(prompts)}
    run.add("speculative_served", summary)
    if not spec.get("completed_count"):
        raise RuntimeError(f"no request to the ngram server succeeded: {spec.get('errors')}")
    rows = [{"arm": "baseline", **summary["baseline"]},
            {"arm": "ngram", **{k: summary["ngram"][k] for k in keys + ("acceptance_rate", "mean_acceptance_length")}}]
    return Table("speculative_served", rows, summary)

