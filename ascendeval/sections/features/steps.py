"""Advanced features section: every feature is an A/B on the real engine, backed by its counters.

* Prefix caching: prompts sharing a long prefix vs prompts of the same length with distinct
  prefixes, on one engine with caching on; TTFT/throughput per arm, speed-up, and the engine's own
  counters (`num_cached_tokens`, `vllm:prefix_cache_queries/hits`) proving where hits happened.
* Speculative decoding: ngram (and a draft model / EAGLE head when named), acceptance from
  `vllm:spec_decode_*` counters, speed-up offline and served, greedy identity check.
* Prefill/decode split per request from the engine's own timestamps (`RequestOutput.metrics`:
  queued -> scheduled -> first token -> last token), and real disaggregated prefill (producer
  and consumer engines joined by a vLLM KV connector).
* Chunked prefill on/off and long-context scaling; KV capacity and the largest batch that runs.

Engine starts dominate the cost on small machines, so one "main" engine (prefix caching on)
serves every measurement that does not need a different engine setting. Engines are open one at a
time: each comparison engine (caching off, KV producer/consumer, chunked prefill off, speculative)
starts after the main engine has measured its arm and been closed.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ... import device as device_mod
from ... import metrics as metrics_mod
from ... import paths
from ...context import SectionRun, SectionSkipped
from ...engines import Sampling, vllm_compat
from ...token_prompts import TokenPrompts

CORPUS = paths.PACKAGE_DIR / "data" / "corpus" / "en.txt"


# =========================================================================== helpers


def _need_vllm(run: SectionRun) -> None:
    if run.cfg.target.engine != "vllm":
        raise SectionSkipped(f"needs the vllm engine (target engine is {run.cfg.target.engine}); "
                             "these features are engine settings of vLLM / vLLM-Ascend")


def counter_delta(before: dict[str, Any], after: dict[str, Any], prefix: str) -> dict[str, Any]:
    """after - before for every counter whose name starts with `prefix` (vectors element-wise).

    Offline engines keep counters for their whole life; deltas isolate one measurement."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if not key.startswith(prefix):
            continue
        prev = before.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value - (prev if isinstance(prev, (int, float)) else 0)
        elif isinstance(value, list):
            prev_l = prev if isinstance(prev, list) else [0] * len(value)
            out[key] = [a - b for a, b in zip(value, prev_l + [0] * (len(value) - len(prev_l)))]
    return out


def _sum_by_name(counters: dict[str, Any], name: str) -> float | None:
    """Sum a counter over its label sets (keys look like `name` or `name{label=..}`)."""
    vals = [v for k, v in counters.items() if (k == name or k.startswith(name + "{")) and isinstance(v, (int, float))]
    return float(sum(vals)) if vals else None


def _vector_by_name(counters: dict[str, Any], name: str) -> list[float] | None:
    vecs = [v for k, v in counters.items() if (k == name or k.startswith(name + "{")) and isinstance(v, list)]
    if not vecs:
        return None
    return [float(sum(xs)) for xs in zip(*vecs)]


def safe_ratio(num: float | None, den: float | None) -> float | None:
    """num / den, None when either is unknown or den is 0 (never a made-up 0 or inf)."""
    if num is None or den is None or den == 0:
        return None
    return float(num) / float(den)


def request_timing(out: Any) -> dict[str, Any]:
    """Queue / prefill / decode seconds of one finished request from the engine's timestamps.

    vLLM stamps each request in the engine core (monotonic): queued, scheduled, first token,
    last token -- the same values its `vllm:request_prefill_time_seconds` /
    `vllm:request_decode_time_seconds` histograms are made from. first_token_latency is measured
    in the front end from arrival (what an offline caller sees as TTFT). Fields are read through
    `vllm_compat`: one this vLLM lacks (e.g. `num_preemptions` before 0.32) is None, and the row's
    `not_reported` says so, instead of failing the step."""
    n_out = len(out.outputs[0].token_ids)
    row: dict[str, Any] = {"prompt_tokens": len(out.prompt_token_ids or []), "output_tokens": n_out,
                           "num_cached_tokens": getattr(out, "num_cached_tokens", None)}
    m, missing = vllm_compat.request_stats(out)
    row["not_reported"] = "; ".join(missing.values()) or None
    if m is None or not m["first_token_ts"]:
        row.update(queue_ms=None, prefill_ms=None, decode_ms=None, ttft_ms=None, tpot_ms=None, preemptions=None)
        return row
    ms = 1000.0

    def span(start: str, end: str) -> float | None:
        if m[start] is None or m[end] is None:
            return None
        return max(m[end] - m[start], 0.0) * ms

    row["queue_ms"] = span("queued_ts", "scheduled_ts")
    row["prefill_ms"] = span("scheduled_ts", "first_token_ts")
    row["decode_ms"] = span("first_token_ts", "last_token_ts")
    row["ttft_ms"] = m["first_token_latency"] * ms if m["first_token_latency"] else None
    row["tpot_ms"] = row["decode_ms"] / (n_out - 1) if n_out > 1 and row["decode_ms"] is not None else None
    row["preemptions"] = m["num_preemptions"]
    return row


@dataclass
class Table:
    """A step result: rows (saved as a sidecar) and a summary (stored in the record)."""

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    columns: list[str] | None = None

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if self.columns:
            df = df[[c for c in self.columns if c in df.columns]]
        return df.round(2)


# =========================================================================== main engine


@dataclass
class Main:
    """The section's main engine (prefix caching on) and what it reports about itself."""

    engine: Any
    info: dict[str, Any]
    tokens: TokenPrompts

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.info.items()), columns=["item", "value"]).set_index("item")

    @property
    def llm(self) -> Any:
        return self.engine.llm

    def generate(self, prompts: list[list[int]], max_tokens: int, ignore_eos: bool = True) -> tuple[list[Any], float]:
        """Raw vllm RequestOutputs (they carry the per-request timestamps) and the wall time."""
        sp = self.engine.sampling_params(Sampling(max_tokens=max_tokens, ignore_eos=ignore_eos))
        t0 = time.perf_counter()
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
        return outs, time.perf_counter() - t0


def start_main(run: SectionRun) -> Main:
    """Start the main engine with prefix caching on (the A/Bs below toggle what they compare)."""
    _need_vllm(run)
    over: dict[str, Any] = {"enable_prefix_caching": True}
    if run.conf.chunk_tokens:
        over["max_num_batched_tokens"] = run.conf.chunk_tokens
    eng = run.engine("features-main", **over)
    info = eng.info()  # includes the scheduler's resolved limits (vllm_compat.scheduler_facts)
    run.add("main_engine", info)
    return Main(eng, info, TokenPrompts(eng.tokenizer(), run.conf.seed))


def close(main: Main | None) -> None:
    if main is not None:
        main.engine.close()


def _need(main: Main | None) -> Main:
    if main is None:
        raise SectionSkipped("the main engine did not start (see step 'main_engine')")
    return main


# =========================================================================== prefix caching


def _arm(main: Main, name: str, prompts: list[list[int]], out_len: int, prime: list[int] | None) -> dict[str, Any]:
    """One arm: prompts one at a time (own TTFT), then the same prompts again as one batch
    (throughput); counters are deltas over the sequential pass only, so hits are this arm's."""
    if prime is not None:  # the first user of a shared prefix pays for it; time the ones after
        main.generate([prime], 1)
    before = main.engine.metrics()
    rows = []
    for p in prompts:
        outs, wall = main.generate([p], out_len)
        rows.append({"arm": name, **request_timing(outs[0]), "e2e_ms": wall * 1000})
    after = main.engine.metrics()
    deltas = counter_delta(before, after, "vllm:prefix_cache")
    queries = _sum_by_name(deltas, "vllm:prefix_cache_queries")
    hits = _sum_by_name(deltas, "vllm:prefix_cache_hits")
    # throughput: the batch pass sees the cache state the sequential pass left (warm for both arms
    # equally would hide the effect), so use fresh prompts of the same shape: see prefix_caching()
    return {"rows": rows, "prefix_cache_queries": queries, "prefix_cache_hits": hits,
            "prefix_cache_hit_rate": safe_ratio(hits, queries),
            "num_cached_tokens": int(sum(r["num_cached_tokens"] or 0 for r in rows)),
            "mean_ttft_ms": float(np.mean([r["ttft_ms"] for r in rows if r["ttft_ms"] is not None])),
            "mean_prefill_ms": float(np.mean([r["prefill_ms"] for r in rows if r["prefill_ms"] is not None])),
            "mean_e2e_ms": float(np.mean([r["e2e_ms"] for r in rows]))}


def _batch_throughput(main: Main, prompts: list[list[int]], out_len: int, prime: list[int] | None) -> dict[str, Any]:
    if prime is not None:
        main.generate([prime], 1)
    before = main.engine.metrics()
    outs, wall = main.generate(prompts, out_len)
    deltas = counter_delta(before, main.engine.metrics(), "vllm:prefix_cache")
    n_in = sum(len(p) for p in prompts)
    n_out = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"batch_elapsed_s": wall, "batch_total_tok_per_s": (n_in + n_out) / wall,
            "batch_output_tok_per_s": n_out / wall, "batch_req_per_s": len(prompts) / wall,
            "batch_prefix_cache_hits": _sum_by_name(deltas, "vllm:prefix_cache_hits"),
            "batch_num_cached_tokens": int(sum(getattr(o, "num_cached_tokens", 0) or 0 for o in outs))}


def prefix_workload(tokens: TokenPrompts, n: int, prompt_len: int, ratio: float, shared: bool
                    ) -> tuple[list[list[int]], list[int] | None]:
    """n prompts of prompt_len tokens: a prefix of round(prompt_len*ratio) tokens shared by all
    (shared=True; also returned as the priming prompt) or drawn per prompt (shared=False)."""
    plen = max(1, min(prompt_len - 1, round(prompt_len * ratio)))
    common = tokens.make(plen)
    prompts = [(common if shared else tokens.make(plen)) + tokens.make(prompt_len - plen) for _ in range(n)]
    return prompts, (common + tokens.make(prompt_len - plen) if shared else None)


def prefix_caching(run: SectionRun, main: Main | None) -> Table:
    """Shared-prefix arm vs distinct-prefix arm (same lengths) on the caching engine, and
    optionally the shared arm on an engine with caching off."""
    c = run.conf
    if not c.prefix_caching:
        raise SectionSkipped("prefix_caching: false in params")
    m = _need(main)
    plen = min(c.prefix_prompt_len, (m.info["max_model_len"] or c.prefix_prompt_len) - c.prefix_output_len)
    if plen < 2:
        raise SectionSkipped(f"max_model_len {m.info['max_model_len']} leaves no room for a prompt")
    arms: dict[str, dict[str, Any]] = {}
    for name, shared in (("distinct_prefix", False), ("shared_prefix", True)):
        prompts, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, shared)
        arms[name] = _arm(m, name, prompts, c.prefix_output_len, prime)
        batch, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, shared)
        arms[name].update(_batch_throughput(m, batch, c.prefix_output_len, prime))
    rows = [r for a in arms.values() for r in a["rows"]]
    run.save_rows("prefix_requests", rows)
    summary = {name: {k: v for k, v in a.items() if k != "rows"} for name, a in arms.items()}
    on, miss = summary["shared_prefix"], summary["distinct_prefix"]
    # The speed-up is only claimed where the counters show the hits that explain it.
    backed = bool((on["prefix_cache_hits"] or 0) > 0 and on["num_cached_tokens"] > 0
                  and (miss["num_cached_tokens"] or 0) < on["num_cached_tokens"])
    summary.update({
        "prompt_len": plen, "shared_prefix_len": max(1, min(plen - 1, round(plen * c.prefix_shared_ratio))),
        "num_prompts": c.prefix_num_prompts,
        "ttft_speedup": safe_ratio(miss["mean_ttft_ms"], on["mean_ttft_ms"]),
        "prefill_speedup": safe_ratio(miss["mean_prefill_ms"], on["mean_prefill_ms"]),
        "throughput_speedup": safe_ratio(on["batch_total_tok_per_s"], miss["batch_total_tok_per_s"]),
        "speedup_backed_by_counters": backed,
    })
    run.add("prefix_caching", summary)
    table_rows = [_prefix_row(k, v) for k, v in summary.items() if isinstance(v, dict)]
    return Table("prefix_caching", table_rows, summary)


def _prefix_row(arm: str, a: dict[str, Any]) -> dict[str, Any]:
    return {"arm": arm, **{k: a[k] for k in ("mean_ttft_ms", "mean_prefill_ms", "prefix_cache_queries",
                                             "prefix_cache_hits", "prefix_cache_hit_rate", "num_cached_tokens",
                                             "batch_total_tok_per_s", "batch_num_cached_tokens")}}


def prefix_caching_off(run: SectionRun, main: Main | None, on: Table | None) -> Table:
    """The shared-prefix arm again on an engine with caching off. Runs after the main engine is
    closed (one vLLM engine at a time); `main` only lends its tokenizer and lengths."""
    c = run.conf
    if not (c.prefix_caching and c.prefix_off_engine):
        raise SectionSkipped("prefix_caching / prefix_off_engine: false in params")
    m = _need(main)
    if on is None:
        raise SectionSkipped("the caching-on arms did not run (see step 'prefix_caching')")
    plen = on.summary["prompt_len"]
    off = run.engine("features-prefix-off", enable_prefix_caching=False)
    try:
        m_off = Main(off, {}, m.tokens)
        prompts, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, True)
        arm = _arm(m_off, "shared_prefix_caching_off", prompts, c.prefix_output_len, prime)
        batch, prime = prefix_workload(m.tokens, c.prefix_num_prompts, plen, c.prefix_shared_ratio, True)
        arm.update(_batch_throughput(m_off, batch, c.prefix_output_len, prime))
    finally:
        off.close()
    run.save_rows("prefix_off_requests", arm.pop("rows"))
    summary = {"shared_prefix_caching_off": arm,
               "ttft_speedup_vs_caching_off": safe_ratio(arm["mean_ttft_ms"], on.summary["shared_prefix"]["mean_ttft_ms"])}
    run.add("prefix_caching_off", summary)
    return Table("prefix_caching_off", [_prefix_row("shared_prefix_caching_off", arm)], summary)


# =========================================================================== speculative decoding


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


def speculative_baseline(run: SectionRun, main: Main | None) -> SpecBaseline:
    """The no-speculation arm, on the main engine while it is open."""
    c = run.conf
    if not c.speculative:
        raise SectionSkipped("speculative: false in params")
    m = _need(main)
    prompts = copy_prompts(c.spec_num_prompts)
    _timed_greedy(m.engine, prompts[:1], 4)  # warm-up: first-call overheads out of the baseline
    outs, walls = _timed_greedy(m.engine, prompts, c.spec_output_len)
    return SpecBaseline(prompts, outs, walls)


def speculative(run: SectionRun, base: SpecBaseline | None) -> Table:
    """Each method's engine against the baseline, started after the main engine is closed (one
    vLLM engine at a time)."""
    c = run.conf
    if not c.speculative:
        raise SectionSkipped("speculative: false in params")
    if base is None:
        raise SectionSkipped("the baseline without speculation did not run (see step 'speculative_baseline')")
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
                           "identical_outputs": same, "identical_rate": same / len(prompts)}
    summary["num_prompts"] = len(prompts)
    run.save_rows("speculative_requests", rows)
    run.add("speculative", summary)
    if failures and len(failures) == len(c.spec_methods):
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in failures.items()))
    table = [{"method": k, **{kk: v.get(kk) for kk in ("status", "acceptance_rate", "mean_acceptance_length",
                                                       "per_position_acceptance_rate", "output_tok_per_s",
                                                       "e2e_speedup", "identical_rate", "reason")}}
             for k, v in summary.items() if isinstance(v, dict) and k != "baseline"]
    return Table("speculative", table, summary)


def scrape_metrics(base_url: str) -> dict[str, Any]:
    """Counters of a served vLLM from its Prometheus /metrics (same names as get_metrics())."""
    import httpx

    return metrics_counters(httpx.get(base_url.rstrip("/") + "/metrics", timeout=10).text)


def metrics_counters(text: str) -> dict[str, Any]:
    """The `_total` counters of a Prometheus /metrics page as {name{labels}: value}; the model and
    engine labels dropped, spec-decode acceptance per position as a list."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if not s.name.endswith("_total"):
                continue
            name = s.name[: -len("_total")]
            labels = {k: v for k, v in s.labels.items() if k not in ("model_name", "engine")}
            if name == "vllm:spec_decode_num_accepted_tokens_per_pos" and "position" in labels:
                vec = out.setdefault(name, [])
                pos = int(labels["position"])
                vec.extend([0.0] * (pos + 1 - len(vec)))
                vec[pos] += s.value
                continue
            key = name + ("" if not labels else "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}")
            out[key] = out.get(key, 0.0) + s.value
    return out


def _served_arm(run: SectionRun, url: str, prompts: list[str], max_tokens: int) -> tuple[dict[str, Any], Any]:
    from ... import loadgen

    name = loadgen.list_models(url, run.cfg.server.api_key)[0]
    ep = loadgen.Endpoint(url, name, api_key=run.cfg.server.api_key, ignore_eos=False)
    # one request at a time: speculation trades compute for latency, at batch 1 it shows best
    lr = loadgen.run_load(ep, prompts, max_tokens, loadgen.LoadSpec(max_concurrency=1), warmup_requests=1)
    return lr.metrics(), lr


def speculative_served(run: SectionRun) -> Table:
    """The same A/B through the OpenAI API: a server without and one with ngram speculation,
    measured with the performance section's streaming client (vLLM's metric definitions)."""
    c = run.conf
    if not (c.speculative and c.spec_served):
        raise SectionSkipped("speculative / spec_served: false in params")
    _need_vllm(run)
    if run.cfg.server.kind != "vllm" or run.cfg.server.url:
        raise SectionSkipped("needs servers started here (server.kind vllm, no server.url): the A/B toggles "
                             "the server's speculative_config")
    prompts = copy_prompts(c.spec_served_num_prompts)
    keys = ("mean_ttft_ms", "mean_tpot_ms", "mean_e2el_ms", "output_tok_per_s", "completed_count", "failed_count")
    with run.served("features-served-base") as url:
        base, base_lr = _served_arm(run, url, prompts, c.spec_output_len)
    with run.served("features-served-ngram", speculative_config=spec_config(c, "ngram")) as url:
        before = scrape_metrics(url)
        spec, spec_lr = _served_arm(run, url, prompts, c.spec_output_len)
        acc = acceptance(counter_delta(before, scrape_metrics(url), "vllm:spec_decode"))
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


# =========================================================================== prefill / decode split


def prefill_decode_split(run: SectionRun, main: Main | None) -> Table:
    """Per request, queue / prefill / decode time from the engine's timestamps, across the
    input/output length mixes; requests one at a time and with fresh tokens (no cache hits)."""
    c = run.conf
    if not c.pd_split:
        raise SectionSkipped("pd_split: false in params")
    m = _need(main)
    limit = m.info["max_model_len"]
    rows, dropped = [], []
    m.generate([m.tokens.make(16)], 2)  # warm-up
    for in_len, out_len in c.pd_mixes:
        if in_len + out_len > limit:
            dropped.append([in_len, out_len])
            continue
        for i in range(c.pd_num_prompts):
            outs, wall = m.generate([m.tokens.make(in_len)], out_len)
            r = request_timing(outs[0])
            total = (r["prefill_ms"] or 0) + (r["decode_ms"] or 0)
            rows.append({"mix": f"{in_len}/{out_len}", "input_len": in_len, "output_len": out_len, **r,
                         "prefill_share": safe_ratio(r["prefill_ms"], total), "e2e_ms": wall * 1000})
    if not rows:
        raise SectionSkipped(f"every mix exceeds max_model_len {limit}: {dropped}")
    run.save_rows("pd_split_requests", rows)
    df = pd.DataFrame(rows)
    agg = df.groupby("mix", sort=False).agg(
        input_len=("input_len", "first"), output_len=("output_len", "first"), requests=("mix", "size"),
        mean_queue_ms=("queue_ms", "mean"), mean_prefill_ms=("prefill_ms", "mean"),
        mean_decode_ms=("decode_ms", "mean"), mean_tpot_ms=("tpot_ms", "mean"),
        mean_prefill_share=("prefill_share", "mean"), cached_tokens=("num_cached_tokens", "sum")).reset_index()
    agg["prefill_tok_per_s"] = agg["input_len"] / (agg["mean_prefill_ms"] / 1000)
    summary = {"mixes": agg.to_dict(orient="records"), "dropped_mixes": dropped}
    run.add("pd_split", summary)
    return Table("pd_split", agg.to_dict(orient="records"), summary)


@dataclass
class DisaggReference:
    """The single-instance arm of the disaggregated-prefill comparison, from the main engine."""

    prompts: list[list[int]]
    in_len: int
    single: list[dict[str, Any]]
    tokens: TokenPrompts


def disagg_reference(run: SectionRun, main: Main | None) -> DisaggReference:
    """Single-instance TTFT/TPOT and outputs on the main engine (fresh prompts: no cache hits)."""
    c = run.conf
    if not c.disaggregated:
        raise SectionSkipped("disaggregated: false in params")
    m = _need(main)
    in_len = min(c.disagg_input_len, m.info["max_model_len"] - c.disagg_output_len)
    block = m.info.get("block_size") or 1
    if in_len <= block:
        raise SectionSkipped(f"input length {in_len} does not exceed the KV block size {block}: nothing to transfer")
    prompts = [m.tokens.make(in_len) for _ in range(c.disagg_num_prompts)]
    single = [request_timing(o) | {"token_ids": list(o.outputs[0].token_ids), "text": o.outputs[0].text}
              for o in (m.generate([p], c.disagg_output_len)[0][0] for p in prompts)]
    return DisaggReference(prompts, in_len, single, m.tokens)


def disaggregated_prefill(run: SectionRun, ref: DisaggReference | None) -> Table:
    """Disaggregated prefill as it is deployed: a prefill server (kv_producer) and a decode
    server (kv_consumer) live at once behind the proxy (`pd_proxy.PDProxy`), every request
    prefilled on P, its KV handed to D through the vLLM KV connector, decoded on D. The same
    prompts go, one at a time, to one ordinary server of the same settings for the baseline.

    TTFT through the proxy = prefill on P + KV transfer + first decode step on D (+ the proxy's
    own hop); the proxy times P's part and D's first token separately. D's external prefix-cache
    counters say how many prompt tokens it loaded instead of computing: 0 means the KV was not
    transferred and the step fails. Outputs are compared with the single instance's offline ones.
    On CPU the connector is vLLM's ExampleConnector (KV in files); on Ascend MooncakeConnectorV1,
    on GPUs NixlConnector (params: features.kv_connector / kv_connector_extra_config)."""
    from ... import loadgen
    from ...pd_proxy import PDProxy

    c = run.conf
    if not c.disaggregated:
        raise SectionSkipped("disaggregated: false in params")
    if ref is None:
        raise SectionSkipped("the single-instance reference did not run (see step 'disaggregated_reference')")
    vllm_compat.check_kv_connector(c.kv_connector)
    prompts, in_len, single = ref.prompts, ref.in_len, ref.single
    warm = [ref.tokens.make(in_len)]  # fresh: a warm-up must not leave KV for a timed prompt
    store = run.run_dir / "kv_store"
    shutil.rmtree(store, ignore_errors=True)
    extra = {"shared_storage_path": str(store), **c.kv_connector_extra_config}
    key = run.cfg.server.api_key

    def kv(role: str) -> dict[str, Any]:
        return {"kv_connector": c.kv_connector, "kv_role": role, "kv_connector_extra_config": extra}

    def endpoint(url: str) -> Any:
        return loadgen.Endpoint(url, loadgen.list_models(url, key)[0], api_key=key, ignore_eos=True)

    def one_at_a_time(url: str, batch: list[list[int]]) -> Any:
        return loadgen.run_load(endpoint(url), batch, c.disagg_output_len, loadgen.LoadSpec(max_concurrency=1),
                                warmup_requests=0)

    # the baseline is a server of its own, started like P and D and measured just before them:
    # the run's shared server has served other steps and started at another time
    with run.served("features-pd-single", fresh=True) as single_url:
        one_at_a_time(single_url, warm)  # warm-up, not timed
        base = one_at_a_time(single_url, prompts)
    try:
        with run.served("features-pd-prefill", kv_transfer_config=kv("kv_producer")) as p_url, \
                run.served("features-pd-decode", kv_transfer_config=kv("kv_consumer")) as d_url:
            proxy = PDProxy(p_url, d_url)
            with proxy as url:
                one_at_a_time(url, warm)  # warm-up through the whole path, before the counters are read
                before = scrape_metrics(d_url)
                disagg = one_at_a_time(url, prompts)
                ext = counter_delta(before, scrape_metrics(d_url), "vllm:external_prefix_cache")
    finally:
        stored_bytes = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) if store.exists() else 0
        shutil.rmtree(store, ignore_errors=True)
    parts = proxy.timings[-len(prompts):]  # the warm-up came first
    rows = []
    for i, (s, b, d, part) in enumerate(zip(single, base.results, disagg.results, parts)):
        rows.append({"prompt": i, "input_len": in_len,
                     "single_ttft_ms": _ms(b.ttft_s), "single_tpot_ms": _ms(b.tpot_s),
                     "disagg_ttft_ms": _ms(d.ttft_s), "disagg_tpot_ms": _ms(d.tpot_s),
                     "prefill_instance_ms": part.get("prefill_ms"),
                     "decode_first_token_ms": part.get("decode_first_token_ms"),
                     "kv_transfer_params_returned": part.get("kv_transfer_params_returned"),
                     "single_engine_ttft_ms": s["ttft_ms"],
                     "identical": part.get("text") == s["text"] if part.get("text") is not None else None,
                     "error": d.error or b.error or part.get("error")})
    run.save_rows("disaggregated_requests", rows)
    df = pd.DataFrame(rows)
    loaded = _sum_by_name(ext, "vllm:external_prefix_cache_hits")
    summary = {"kv_connector": c.kv_connector, "topology": "prefill server + decode server + proxy",
               "input_len": in_len, "output_len": c.disagg_output_len, "num_prompts": len(rows),
               "kv_store_bytes": stored_bytes,
               "external_prefix_cache_queries": _sum_by_name(ext, "vllm:external_prefix_cache_queries"),
               "external_prefix_cache_hits": loaded,
               "kv_loaded_tokens": int(loaded) if loaded is not None else None,
               "mean_single_ttft_ms": _mean(df, "single_ttft_ms"),
               "mean_disagg_ttft_ms": _mean(df, "disagg_ttft_ms"),
               "mean_prefill_instance_ms": _mean(df, "prefill_instance_ms"),
               "mean_decode_first_token_ms": _mean(df, "decode_first_token_ms"),
               "mean_single_tpot_ms": _mean(df, "single_tpot_ms"),
               "mean_disagg_tpot_ms": _mean(df, "disagg_tpot_ms"),
               "identical_rate": _mean(df, "identical")}
    run.add("disaggregated_prefill", summary)
    if not loaded:
        raise RuntimeError(f"the decode server loaded no KV through {c.kv_connector} (external prefix-cache "
                           "hits 0): the prefill was recomputed, not transferred")
    return Table("disaggregated_prefill", rows, summary)


def _ms(seconds: float | None) -> float | None:
    return seconds * 1000 if seconds is not None else None


def _mean(df: pd.DataFrame, col: str) -> float | None:
    """Mean of the measured values of a column; None when none was measured (never 0)."""
    if col not in df or df[col].dropna().empty:
        return None
    return float(df[col].dropna().astype(float).mean())


# =========================================================================== long context


def context_lengths(requested: list[int], max_model_len: int, out_len: int, kv_tokens: int | None
                    ) -> tuple[list[int], list[int]]:
    """(lengths to run, lengths dropped). The cap is max_model_len - out_len and the KV cache;
    when anything was dropped, the cap itself is added so the sweep reaches the limit."""
    cap = max_model_len - out_len
    if kv_tokens:
        cap = min(cap, kv_tokens - out_len)
    keep = [x for x in requested if x <= cap]
    dropped = [x for x in requested if x > cap]
    if dropped and cap >= 2 and cap not in keep:
        keep.append(cap)
    return sorted(keep), dropped


def _sweep(m: Main, lengths: list[int], out_len: int, mode: str, repeats: int = 1) -> list[dict[str, Any]]:
    """One row per length: the median-TTFT request of `repeats` (fresh tokens each, so no cache
    hits); a single request per point is at the mercy of whatever else the machine runs."""
    rows = []
    m.generate([m.tokens.make(16)], 2)  # warm-up
    for n in lengths:
        tries = []
        for _ in range(repeats):
            outs, wall = m.generate([m.tokens.make(n)], out_len)
            tries.append(request_timing(outs[0]) | {"e2e_ms": wall * 1000})
        tries.sort(key=lambda r: r["ttft_ms"] if r["ttft_ms"] is not None else math.inf)
        r = tries[(len(tries) - 1) // 2]
        rows.append({"mode": mode, "input_len": n, **r, "repeats": repeats,
                     "ttft_ms_min": tries[0]["ttft_ms"], "ttft_ms_max": tries[-1]["ttft_ms"],
                     "prefill_tok_per_s": safe_ratio(n, (r["prefill_ms"] or 0) / 1000),
                     "decode_tok_per_s": safe_ratio(1000.0, r["tpot_ms"])})
    return rows


def long_context(run: SectionRun, main: Main | None) -> Table:
    """TTFT and decode speed vs input length on the main engine (chunked prefill as configured)."""
    c = run.conf
    if not c.long_context:
        raise SectionSkipped("long_context: false in params")
    m = _need(main)
    lengths, dropped = context_lengths(c.long_context_lengths, m.info["max_model_len"], c.long_context_output_len,
                                       m.info.get("kv_cache_tokens"))
    if not lengths:
        raise SectionSkipped(f"no length fits max_model_len {m.info['max_model_len']}")
    chunked = bool(m.info.get("enable_chunked_prefill"))
    mode = "chunked_on" if chunked else "chunked_off"
    budget = m.info.get("max_num_batched_tokens")
    rows = _sweep(m, lengths, c.long_context_output_len, mode, c.long_context_repeats)
    for r in rows:  # scheduler steps the prompt's prefill took (the step budget splits it)
        r["prefill_chunks"] = math.ceil(r["input_len"] / budget) if chunked and budget else 1
    run.save_rows("long_context_requests", rows)
    run.add("long_context", {"mode": mode, "lengths": lengths, "dropped_lengths": dropped,
                             "max_num_batched_tokens": budget,
                             "chunked_lengths": [r["input_len"] for r in rows if r["prefill_chunks"] > 1],
                             "points": [{k: r[k] for k in ("input_len", "prefill_chunks", "ttft_ms", "ttft_ms_min",
                                                            "ttft_ms_max", "prefill_ms", "tpot_ms", "decode_tok_per_s",
                                                            "prefill_tok_per_s")} for r in rows]})
    return Table("long_context", rows, {"lengths": lengths, "dropped": dropped},
                 ["mode", "input_len", "prefill_chunks", "ttft_ms", "ttft_ms_min", "ttft_ms_max", "prefill_ms",
                  "prefill_tok_per_s", "tpot_ms", "decode_tok_per_s"])


def chunked_prefill_off(run: SectionRun, main: Main | None, on: Table | None) -> Table:
    """The same sweep on an engine with chunked prefill off (the whole prompt in one step, so the
    step budget must hold the longest prompt)."""
    c = run.conf
    if not (c.long_context and c.chunked_prefill_off):
        raise SectionSkipped("long_context / chunked_prefill_off: false in params")
    m = _need(main)
    if on is None:
        raise SectionSkipped("the chunked-on sweep did not run (see step 'long_context')")
    if not m.info.get("enable_chunked_prefill"):
        raise SectionSkipped("the main engine already runs with chunked prefill off")
    lengths = on.summary["lengths"]
    if not any(r["prefill_chunks"] > 1 for r in on.rows):
        # chunking only splits a prompt longer than the step budget: off would run the same schedule
        raise SectionSkipped(f"no swept length exceeds the main engine's max_num_batched_tokens "
                             f"{m.info.get('max_num_batched_tokens')}: chunked prefill split no prompt; "
                             "set features.chunk_tokens below the longest length")
    eng = run.engine("features-chunked-off", enable_chunked_prefill=False,
                     max_num_batched_tokens=max(m.info["max_model_len"], m.info.get("max_num_batched_tokens") or 0))
    try:
        off = Main(eng, {}, m.tokens)
        rows = [r | {"prefill_chunks": 1} for r in _sweep(off, lengths, c.long_context_output_len, "chunked_off",
                                                          c.long_context_repeats)]
    finally:
        eng.close()
    run.save_rows("long_context_chunked_off_requests", rows)
    by_len = {r["input_len"]: r for r in on.rows}
    run.add("chunked_prefill", {"lengths": lengths, "points": [
        {"input_len": r["input_len"], "prefill_chunks_on": by_len[r["input_len"]]["prefill_chunks"],
         "ttft_ms_chunked_on": by_len[r["input_len"]]["ttft_ms"],
         "ttft_ms_chunked_off": r["ttft_ms"], "tpot_ms_chunked_on": by_len[r["input_len"]]["tpot_ms"],
         "tpot_ms_chunked_off": r["tpot_ms"]} for r in rows]})
    return Table("chunked_prefill_off", rows, {"lengths": lengths}, on.columns)


@dataclass
class Plot:
    path: str

    def table(self) -> Any:
        from IPython.display import Image

        return Image(filename=self.path)


def long_context_plot(run: SectionRun, on: Table | None, off: Table | None) -> Plot:
    """TTFT and decode speed vs input length, chunked prefill on (and off when measured)."""
    if on is None:
        raise SectionSkipped("no long-context sweep to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for t in (on, off):
        if t is None:
            continue
        xs = [r["input_len"] for r in t.rows]
        label = t.rows[0]["mode"].replace("_", " ")
        ax[0].plot(xs, [r["ttft_ms"] for r in t.rows], marker="o", label=label)
        ax[1].plot(xs, [r["decode_tok_per_s"] for r in t.rows], marker="o", label=label)
    for a, title, unit in ((ax[0], "TTFT vs input length", "ms"), (ax[1], "decode speed vs input length", "tok/s")):
        a.set_xscale("log", base=2)
        a.set_xlabel("input tokens")
        a.set_ylabel(unit)
        a.set_title(title)
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(f"{run.cfg.model.short_name} on {run.cfg.target.engine}/{run.cfg.target.device}")
    fig.tight_layout()
    path = run.artifact_path("long_context.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Plot(str(path))


# =========================================================================== capacity


def max_concurrency(num_blocks: int, block_size: int, seq_len: int) -> int:
    """Sequences of seq_len tokens the KV cache holds at once (whole blocks per sequence, as the
    block manager allocates them)."""
    return num_blocks // math.ceil(seq_len / block_size)


def _rss() -> int:
    return device_mod.process_tree_memory()["rss_bytes"]


def capacity(run: SectionRun, main: Main | None) -> Table:
    """KV capacity at each length from the engine's own block count, then the largest batch
    actually run at that length (capped by max_num_seqs and capacity_max_batch), with preemptions
    (a batch that did not fit is preempted, not failed) and the process memory it used."""
    c = run.conf
    if not c.capacity:
        raise SectionSkipped("capacity: false in params")
    m = _need(main)
    blocks, bs = m.info.get("kv_cache_blocks"), m.info.get("block_size")
    if not blocks or not bs:
        raise SectionSkipped("the engine reports no KV block count")
    lengths, dropped = context_lengths(c.capacity_lengths, m.info["max_model_len"], 0, m.info.get("kv_cache_tokens"))
    rows = []
    for n in lengths:
        fit = max_concurrency(blocks, bs, n)
        batch = min(fit, m.info.get("max_num_seqs") or fit, c.capacity_max_batch)
        in_len = max(n - c.capacity_output_len, 1)
        before = _rss()
        outs, wall = m.generate([m.tokens.make(in_len) for _ in range(batch)], c.capacity_output_len)
        after = _rss()
        timings = [request_timing(o) for o in outs]
        done = sum(1 for o in outs if len(o.outputs[0].token_ids) == c.capacity_output_len)
        rows.append({"seq_len": n, "kv_max_concurrent_seqs": fit, "batch_run": batch, "completed": done,
                     # None (not reported by this vLLM) stays None: it is not zero preemptions.
                     "preemptions": None if any(t["preemptions"] is None for t in timings)
                     else int(sum(t["preemptions"] for t in timings)),
                     "kv_fraction_used": batch * math.ceil(n / bs) / blocks, "elapsed_s": wall,
                     "output_tok_per_s": batch * c.capacity_output_len / wall,
                     "rss_after_bytes": after, "rss_delta_bytes": after - before,
                     "batch_limited_by": "kv_cache" if batch == fit else (
                         "max_num_seqs" if batch == m.info.get("max_num_seqs") else "capacity_max_batch")})
    run.save_rows("capacity", rows)
    summary = {"kv_cache_blocks": blocks, "block_size": bs, "kv_cache_tokens": m.info.get("kv_cache_tokens"),
               "kv_cache_memory_bytes": run.cfg.target.kv_cache_memory_bytes,
               "kv_max_concurrency_at_max_model_len": m.info.get("kv_cache_max_concurrency"),
               "points": rows, "dropped_lengths": dropped}
    run.add("capacity", summary)
    return Table("capacity", rows, summary)


# =========================================================================== opscan


def opscan(run: SectionRun) -> Any:
    """Operator compatibility scan of the model directory (see opscan.py)."""
    from ... import opscan as opscan_mod

    c = run.conf
    if not c.opscan:
        raise SectionSkipped("opscan: false in params")
    path = c.opscan_model_path or str(run.model().path)
    res = opscan_mod.scan(path, device=run.cfg.target.device, trace=c.opscan_trace,
                          trust_remote_code=run.cfg.model.trust_remote_code)
    run.save_rows("opscan", res.rows)
    run.add("opscan", res.summary)
    return res


def steps_table(run: SectionRun) -> pd.DataFrame:
    """Each feature's status (ok / failed / skipped) and why: the section's verdict at a glance."""
    return pd.DataFrame([{"feature": k, "status": v["status"], "reason": v["reason"], "wall_s": round(v["wall_s"], 1)}
                         for k, v in run.steps.items()])


def iter_tables(*tables: Table | None) -> Iterator[Table]:
    return (t for t in tables if t is not None)
