"""The deployment matrix: does a deployment setting change the answers?

The accuracy regressions reported against vLLM-Ascend are mostly "this setting changes the
outputs" (full graph with chunked prefill scoring 56.7 where eager scores 96.1; eager and graph
outputs differing; results moving with TP or the prefill/decode split). Here one baseline arm (the
params' target, eager) and one arm per deployment setting read the same sequences, and each arm is
compared with the float32 reference AND with the baseline:

* prefill path (teacher-forced): the arm reads the reference's sequences and returns its top-N
  `prompt_logprobs`: top-1 agreement, top-k overlap, |logprob difference| of the sequence's token,
  KL renormalised on the ids both returned (labelled so);
* decode path (free-running): greedy generation with top-N logprobs per token: agreement with the
  baseline's tokens, the first divergence and whether the baseline was at a near tie there, the
  decode logprobs compared up to it; and the arm's tokens checked under the reference.

Arms reuse engines where the setting allows: the precision section's target is the baseline (or the
graph arm when the params' target is not eager), and the batch and prefix-cache arms run on it.
When that target is the run's shared server, those three arms are requests to the served
deployment (batch 1: one request in flight; prefix cache: the server's /reset_prefix_cache, its
cached-token counts per request).
Every other arm starts its own engine (one vLLM engine at a time), recorded with its start time.
Arms that cannot run on this target are listed with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import output_guard
from ... import precision_metrics as pm
from ...errors import SectionSkipped
from .config import ARM_KINDS

BASELINE = "baseline"
# a served target whose /metrics states no block size: a prefix this many tokens per block fills
# whole blocks of any size up to it (vllm-ascend's default is 128, vLLM's on GPU 16)
SERVED_BLOCK_FALLBACK = 128


@dataclass
class Arm:
    """One deployment setting: how its engine differs from the target's (`overrides`), or how its
    requests differ on the baseline's engine (`on_baseline`)."""

    name: str
    kind: str  # graph | chunked_prefill | ... | dtype | kv_cache_dtype | custom | baseline
    setting: str  # what it changes, for the card
    setting_zh: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    on_baseline: bool = False  # batch / prefix cache: the baseline's engine, other requests
    reason: str | None = None  # set: not run, and why
    reason_zh: str | None = None


@dataclass
class Probe:
    """What one arm returned: per reference sequence its prompt logprobs (prefill path), per
    prompt its greedy tokens and their logprobs (decode path)."""

    prompt_entries: list[list[dict[int, float] | None]] | None = None
    prompt_error: str | None = None
    outputs: list[tuple[list[int], list[int], list[dict[int, float] | None]]] = field(default_factory=list)
    cached_tokens: list[int | None] = field(default_factory=list)
    engine_start_s: float | None = None
    wall_s: float = 0.0


# --------------------------------------------------------------------------- which arms


def plan(cfg: Any, conf: Any, feature_conf: Any) -> list[Arm]:
    """Every arm that applies to the target, and the others with the reason they do not run."""
    target, dep = cfg.target, conf.deployment
    chosen = set(dep.arms) if dep.arms is not None else set(ARM_KINDS)
    eager = target.enforce_eager
    arms: list[Arm] = []

    def add(arm: Arm, kind: str | None = None) -> None:
        if (kind or arm.kind) not in chosen and arm.reason is None:
            arm.reason, arm.reason_zh = "not in precision.deployment.arms", "不在 precision.deployment.arms 中"
        arms.append(arm)

    add(Arm("graph", "graph", "graph mode (torch.compile / ACL graph) vs eager", "图模式（torch.compile / ACL graph）对比 eager",
            {"enforce_eager": False} if eager else {"enforce_eager": True}))
    add(Arm("chunked_prefill", "chunked_prefill", f"chunked prefill, {dep.chunk_tokens}-token chunks",
            f"分块预填充，每块 {dep.chunk_tokens} 个 token",
            {"enable_chunked_prefill": True, "max_num_batched_tokens": dep.chunk_tokens,
             "max_num_seqs": min(dep.chunk_tokens, target.max_num_seqs or dep.chunk_tokens)}))
    prefix = Arm("prefix_cache", "prefix_cache", "prefix-cache hit vs miss (the same prompts after the cache is warm)",
                 "前缀缓存命中对比未命中（缓存预热后的相同提示词）", on_baseline=True)
    if target.enable_prefix_caching is False:
        prefix.reason = "prefix caching is off in the target (target.enable_prefix_caching: false)"
        prefix.reason_zh = "目标关闭了前缀缓存（target.enable_prefix_caching: false）"
    add(prefix)
    methods = getattr(feature_conf, "spec_methods", None) or ["ngram"]
    from ..features.speculative import spec_config

    for m in methods:
        add(Arm(f"speculative:{m}", "speculative", f"speculative decoding ({m}) vs none", f"投机解码（{m}）对比不投机",
                {"speculative_config": spec_config(feature_conf, m)}), "speculative")
    add(Arm("batch", "batch", "batch 1 (one request at a time) vs all prompts in one batch",
            "批大小 1（逐条请求）对比所有提示词一个批次", on_baseline=True))
    tp = Arm("tensor_parallel", "tensor_parallel", f"tensor parallel 1 vs {target.count}",
             f"张量并行 1 对比 {target.count}", {"tensor_parallel_size": 1})
    if target.count < 2:
        tp.setting, tp.setting_zh = "tensor parallel 2 vs 1", "张量并行 2 对比 1"
        tp.reason = f"needs a target on 2 or more devices (target.count is {target.count})"
        tp.reason_zh = f"需要目标使用 2 个或更多设备（target.count 为 {target.count}）"
    add(tp)
    add(Arm("pd_split", "pd_split", "disaggregated prefill vs one instance", "预填充/解码分离对比单实例",
            reason="needs a prefill server and a decode server behind a proxy: the features section runs that pair "
                   "(features.disaggregated) and compares each prompt's output with one instance's; its timed "
                   "outputs are checked by the output guard. Not compared position by position here",
            reason_zh="需要预填充服务和解码服务及代理：features 章节运行该服务对（features.disaggregated），"
                      "逐条比较其输出与单实例的输出，其计时输出由输出校验检查；此处不逐位置比较"))
    for dt in dep.dtypes:
        arms.append(Arm(f"dtype:{dt}", "dtype", f"model dtype {dt} vs {cfg.model.dtype}",
                        f"模型数据类型 {dt} 对比 {cfg.model.dtype}", {"dtype": dt}))
    for kv in dep.kv_cache_dtypes:
        arms.append(Arm(f"kv_cache_dtype:{kv}", "kv_cache_dtype", f"KV cache dtype {kv}", f"KV 缓存数据类型 {kv}",
                        {"kv_cache_dtype": kv}))
    for c in dep.custom:
        over = dict(c.engine_args)
        if c.model_path:
            over["model_path"] = c.model_path
        text = ", ".join(f"{k}={v}" for k, v in over.items())
        arms.append(Arm(c.name, "custom", text or "as the target", text or "与目标相同", over))
    return arms


# --------------------------------------------------------------------------- probing one engine


def _prompt_entries(engine: Any, reference: Any, n: int, one_at_a_time: bool) -> list[list[Any]]:
    from ...engines.base import Sampling

    seqs = [s.ids for s in reference.sequences]
    sp = Sampling(max_tokens=1, temperature=0.0, prompt_logprobs=n, detokenize=False)
    gens = [g for s in seqs for g in engine.generate([s], sp)] if one_at_a_time else engine.generate(seqs, sp)
    out = []
    for s, g in zip(reference.sequences, gens):
        if not g.prompt_logprobs or len(g.prompt_logprobs) != len(s.ids):
            raise RuntimeError(f"prompt {s.prompt.id}: {len(g.prompt_logprobs or [])} prompt logprobs for "
                               f"{len(s.ids)} tokens")
        out.append(g.prompt_logprobs)
    return out


def _free(engine: Any, prompts: list[list[int]], conf: Any, one_at_a_time: bool) -> list[Any]:
    from ...engines.base import Sampling

    sp = Sampling(max_tokens=conf.max_new_tokens, temperature=0.0, logprobs=conf.target_logprobs, detokenize=False)
    return [g for p in prompts for g in engine.generate([p], sp)] if one_at_a_time else engine.generate(prompts, sp)


def probe(engine: Any, reference: Any, conf: Any, one_at_a_time: bool = False, prefill: bool = True) -> Probe:
    """The arm's answers on the reference's sequences (prefill) and prompts (decode)."""
    t0 = time.perf_counter()
    p = Probe()
    if prefill:
        try:
            p.prompt_entries = _prompt_entries(engine, reference, conf.target_logprobs, one_at_a_time)
        except Exception as exc:  # noqa: BLE001 - an engine that refuses prompt logprobs (e.g. with speculation)
            p.prompt_error = f"{type(exc).__name__}: {exc}"[:300]
    gens = _free(engine, [s.prompt_ids for s in reference.sequences], conf, one_at_a_time)
    p.outputs = [(list(g.prompt_token_ids), list(g.token_ids), list(g.logprobs or [])) for g in gens]
    p.cached_tokens = [g.extra.get("num_cached_tokens") for g in gens]
    p.wall_s = time.perf_counter() - t0
    return p


def _prefix_probes(engine: Any, reference: Any, conf: Any) -> tuple[Probe, Probe]:
    """Miss and hit on the same engine: every prompt behind a shared prefix two KV blocks long; the
    cache is reset before each miss request, then all prompts run again and hit the prefix."""
    from ...engines import vllm_compat
    from ...engines.base import Sampling

    llm = getattr(engine, "llm", None)
    if llm is not None:
        cache = getattr(vllm_compat.vllm_config(llm), "cache_config", None)
        block = int(getattr(cache, "block_size", None) or 16)
        reset_cache = llm.reset_prefix_cache
    else:  # a served target: the block size its /metrics states, the reset its dev route offers
        block = engine.block_size() or SERVED_BLOCK_FALLBACK
        reset_cache = engine.reset_prefix_cache
    pool = [t for s in reference.sequences for t in s.ids]
    prefix = (pool * (2 * block // max(len(pool), 1) + 1))[: 2 * block]
    prompts = [prefix + s.prompt_ids for s in reference.sequences]
    sp = Sampling(max_tokens=conf.max_new_tokens, temperature=0.0, logprobs=conf.target_logprobs, detokenize=False)

    def run(reset: bool) -> Probe:
        t0 = time.perf_counter()
        gens = []
        for pr in prompts:
            if reset:
                reset_cache()
            gens += engine.generate([pr], sp)
        return Probe(outputs=[(list(g.prompt_token_ids), list(g.token_ids), list(g.logprobs or [])) for g in gens],
                     cached_tokens=[g.extra.get("num_cached_tokens") for g in gens], wall_s=time.perf_counter() - t0)

    miss = run(reset=True)
    hit = run(reset=False)
    return miss, hit


# --------------------------------------------------------------------------- comparing


def compare(arm: str, probe_: Probe, base: Probe, reference: Any, conf: Any, ref_logits: list[Any] | None,
            memo: dict[Any, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One arm's figures against the reference and the baseline, and its per-position rows.
    `memo` (shared across arms) keeps each comparison with the reference by its inputs: an arm
    that returned exactly what another did gets the same rows without recomputing them."""
    memo = {} if memo is None else memo
    dep = conf.deployment
    out: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    seqs = reference.sequences
    # prefill path
    if probe_.prompt_entries is not None and base.prompt_entries is not None and ref_logits is not None:
        ref_rows, base_rows = [], []
        for si, s in enumerate(seqs):
            start, end = _window(s, conf)
            for i in range(end - start):
                pos = start + i
                tok = s.ids[pos + 1]
                a, b = probe_.prompt_entries[si][pos + 1], base.prompt_entries[si][pos + 1]
                key = ("prefill", si, pos, tuple(sorted(a.items())))
                if key not in memo:
                    memo[key] = pm.returned_entries_metrics(ref_logits[si][i], a, tok, k=conf.top_k)
                ref_rows.append(memo[key])
                vb = pm.entries_vs_entries(b, a, tok, k=conf.top_k)
                base_rows.append(vb)
                rows.append({"arm": arm, "path": "prefill", "prompt_id": s.prompt.id, "position": pos,
                             "top1_match_vs_baseline": vb["top1_match"],
                             "abs_logprob_diff_vs_baseline": abs(vb["logprob_diff"]) if vb["finite"] else None})
        sref = pm.summarize_positions(ref_rows, pm.SCOPE_RETURNED)
        n = len(base_rows)
        diffs = [abs(r["logprob_diff"]) for r in base_rows if r["finite"]]
        kls = [r["kl_common_renorm"] for r in base_rows if r["finite"]]
        out.update({
            "tf_num_positions": n,
            "tf_top1_agreement_vs_baseline": sum(r["top1_match"] for r in base_rows) / n if n else None,
            "tf_topk_overlap_vs_baseline": sum(r["topk_overlap"] for r in base_rows) / n if n else None,
            "tf_mean_abs_logprob_diff_vs_baseline": sum(diffs) / len(diffs) if diffs else None,
            "tf_max_abs_logprob_diff_vs_baseline": max(diffs) if diffs else None,
            "tf_mean_kl_common_vs_baseline": sum(kls) / len(kls) if kls else None,
            "top1_agreement": sref["top1_agreement"], "topk_overlap": sref["topk_overlap"],
            "mean_kl_returned_renorm": sref.get("mean_kl_returned_renorm"),
            "mean_abs_ref_logprob_diff": sref["mean_abs_ref_logprob_diff"],
        })
    # decode path
    agree = compared = diverged = beyond = 0
    firsts: list[int] = []
    dec_diffs: list[float] = []
    for si, ((_, ids, lps), (_, bids, blps)) in enumerate(zip(probe_.outputs, base.outputs)):
        c = pm.compare_continuations(bids, ids)
        agree += c.num_agree
        compared += c.num_compared
        for j in range(c.prefix_match):
            if j < len(lps) and j < len(blps) and lps[j] and blps[j] and bids[j] in lps[j] and bids[j] in blps[j]:
                dec_diffs.append(abs(float(lps[j][bids[j]]) - float(blps[j][bids[j]])))
        d = c.first_divergence
        margin = None
        if d is not None:
            diverged += 1
            firsts.append(d)
            if d < len(ids) and d < len(bids) and d < len(blps) and blps[d]:
                b_lp = blps[d]
                margin = float(b_lp[bids[d]]) - float(b_lp.get(ids[d], min(b_lp.values())))
            beyond += margin is None or margin > dep.tie_nats
        pid = seqs[si].prompt.id if si < len(seqs) else f"p{si}"
        for j in range(max(len(ids), len(bids))):
            rows.append({"arm": arm, "path": "decode", "prompt_id": pid, "position": j,
                         "diverged": d is not None and j >= d,
                         "baseline_margin_at_divergence": margin if j == d else None})
    out.update({
        "free_agreement_vs_baseline": agree / compared if compared else None,
        "num_prompts": len(probe_.outputs), "num_prompts_diverged": diverged,
        "first_divergence_min": min(firsts) if firsts else None,
        "divergences_beyond_tie": beyond,
        "decode_mean_abs_logprob_diff_vs_baseline": sum(dec_diffs) / len(dec_diffs) if dec_diffs else None,
    })
    # the arm's own tokens under the reference (teacher-forced on the arm's context)
    scored = []
    for pids, ids, _ in probe_.outputs:
        key = ("decode", tuple(pids), tuple(ids))
        if ids and key not in memo:
            memo[key] = output_guard.score_under_reference(reference.engine, output_guard.Sample(pids, ids),
                                                           conf.max_new_tokens)
        scored += memo.get(key, [])
    out["output_ref_top1_agreement"] = (sum(r["ref_top1"] == r["token"] for r in scored) / len(scored)
                                        if scored else None)
    if all(len(pids) and pids == s.prompt_ids for (pids, _, _), s in zip(probe_.outputs, seqs)):
        ra = rc = 0
        for (_, ids, _), s in zip(probe_.outputs, seqs):
            c = pm.compare_continuations(s.continuation_ids, ids)
            ra, rc = ra + c.num_agree, rc + c.num_compared
        out["free_agreement_vs_reference"] = ra / rc if rc else None
    cached = [c for c in probe_.cached_tokens if c is not None]
    if cached:
        out["cached_tokens"] = sum(cached)
    return out, rows


def _window(seq: Any, conf: Any) -> tuple[int, int]:
    from .steps import _window as window

    return window(seq, conf)


def reference_logits(reference: Any, conf: Any) -> list[Any]:
    """Per reference sequence, the reference's logits at the compared positions ([n, V] each)."""
    out = []
    for s in reference.sequences:
        start, end = _window(s, conf)
        n = end - start
        out.append(reference.logits(s.ids, n + 1)[:n])  # the teacher-forced step's forward, kept
    return out


# --------------------------------------------------------------------------- verdict


def arm_verdict(fig: dict[str, Any], base_fig: dict[str, Any], th: Any) -> dict[str, Any]:
    checks: list[pm.Check] = []
    if th.min_top1_vs_baseline is not None:
        checks.append(pm.check("tf_top1_agreement_vs_baseline", fig.get("tf_top1_agreement_vs_baseline"), ">=",
                               th.min_top1_vs_baseline))
    if th.max_mean_abs_logprob_diff_vs_baseline is not None:
        checks.append(pm.check("tf_mean_abs_logprob_diff_vs_baseline",
                               fig.get("tf_mean_abs_logprob_diff_vs_baseline"), "<=",
                               th.max_mean_abs_logprob_diff_vs_baseline))
    if th.max_divergences_beyond_tie is not None:
        checks.append(pm.check("divergences_beyond_tie", fig.get("divergences_beyond_tie"), "<=",
                               th.max_divergences_beyond_tie))
    if th.max_top1_drop_vs_reference is not None:
        a, b = fig.get("top1_agreement"), base_fig.get("top1_agreement")
        drop = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
        fig["top1_drop_vs_reference"] = drop
        checks.append(pm.check("top1_drop_vs_reference", drop, "<=", th.max_top1_drop_vs_reference))
    return {"passed": pm.overall(checks), "checks": [c.as_dict() for c in checks]}


# --------------------------------------------------------------------------- the matrix


@dataclass
class Matrix:
    arms: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    wall_s: float

    def table(self) -> Any:
        import pandas as pd

        cols = ["arm", "status", "tf_top1_agreement_vs_baseline", "tf_mean_abs_logprob_diff_vs_baseline",
                "top1_agreement", "free_agreement_vs_baseline", "num_prompts_diverged", "first_divergence_min",
                "divergences_beyond_tie", "engine_start_s", "wall_s", "passed"]
        return pd.DataFrame([{c: (a.get("verdict") or {}).get("passed") if c == "passed" else a.get(c)
                              for c in cols} for a in self.arms])

    def not_run(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"arm": a["arm"], "reason": a.get("reason")} for a in self.arms
                             if a["status"] != "ok"])


def run_matrix(run: Any, reference: Any, target: Any, conf: Any | None = None) -> Matrix:
    """Probe the baseline and every arm that applies, compare, record `deployment` and the
    per-position sidecar `deployment_positions`. Closes `target` (one vLLM engine at a time)."""
    conf = conf or run.conf
    dep = conf.deployment
    if not dep.enabled:
        raise SectionSkipped("precision.deployment.enabled is off in params",
                             zh="参数文件中已关闭 precision.deployment.enabled")
    if reference is None:
        raise SectionSkipped("needs the reference sequences (step 'reference' produced none)",
                             zh="需要参考基线的序列（步骤 'reference' 未产出任何序列）")
    served = getattr(target, "name", None) == "openai"
    if run.cfg.target.engine != "vllm" or target is None or (getattr(target, "llm", None) is None and not served):
        raise SectionSkipped("the deployment matrix restarts the target with other settings: it needs a vLLM "
                             f"target, offline or through the run's server (target.engine is {run.cfg.target.engine})",
                             zh="部署矩阵需要以不同设置重启目标引擎：需要 vLLM 目标（离线或经本次运行的服务）"
                                f"（target.engine 为 {run.cfg.target.engine}）")
    t0 = time.perf_counter()
    arms = plan(run.cfg, conf, run.cfg.sections.features)
    probes: dict[str, Probe] = {}
    errors: dict[str, str] = {}
    eager_target = run.cfg.target.enforce_eager
    target_arm = BASELINE if eager_target else "graph"

    def on_baseline(eng: Any) -> None:
        """The arms that are other requests on the baseline's engine (batch 1, prefix-cache hit)."""
        for arm in arms:
            if arm.reason or not arm.on_baseline:
                continue
            try:
                if arm.kind == "batch":
                    probes[arm.name] = probe(eng, reference, conf, one_at_a_time=True)
                elif arm.kind == "prefix_cache":
                    miss, hit = _prefix_probes(eng, reference, conf)
                    probes["prefix_cache:miss"], probes[arm.name] = miss, hit
            except Exception as exc:  # noqa: BLE001 - one arm's failure is its row, the others go on
                errors[arm.name] = f"{type(exc).__name__}: {exc}"[:300]

    probes[target_arm] = probe(target, reference, conf)
    if eager_target:
        on_baseline(target)
    target.close()
    if not eager_target:  # the params' target is the graph arm; the baseline is the same, eager
        eng = run.engine("deployment-baseline", enforce_eager=True)
        try:
            start = run.engine_starts[-1]["wall_s"]
            probes[BASELINE] = probe(eng, reference, conf)
            probes[BASELINE].engine_start_s = start
            on_baseline(eng)
        finally:
            eng.close()
    for arm in arms:
        if arm.reason or arm.on_baseline or arm.name == target_arm:
            continue
        try:
            eng = run.engine(f"deployment-{arm.name}", **arm.overrides)
        except Exception as exc:  # noqa: BLE001 - an engine that does not start with this setting
            errors[arm.name] = f"engine did not start: {type(exc).__name__}: {exc}"[:300]
            continue
        try:
            start = run.engine_starts[-1]["wall_s"]
            probes[arm.name] = probe(eng, reference, conf)
            probes[arm.name].engine_start_s = start
        except Exception as exc:  # noqa: BLE001
            errors[arm.name] = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            eng.close()
    if BASELINE not in probes:
        raise RuntimeError("the baseline arm produced nothing to compare with")
    ref_logits = reference_logits(reference, conf)
    base = probes[BASELINE]
    memo: dict[Any, Any] = {}
    base_fig, _ = compare(BASELINE, base, base, reference, conf, ref_logits, memo)
    results: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    on_server = served and eager_target
    base_row = {"arm": BASELINE, "kind": BASELINE,
                "setting": "the params' target, eager" + (", through the run's shared server" if on_server else ""),
                "setting_zh": "参数中的目标，eager 模式" + ("，经本次运行的共享服务" if on_server else ""),
                "status": "ok", "via_shared_server": on_server,
                "engine_start_s": base.engine_start_s, "reused_engine": eager_target, "wall_s": base.wall_s,
                **{k: v for k, v in base_fig.items() if not k.endswith("_vs_baseline") and k not in
                   ("num_prompts_diverged", "first_divergence_min", "divergences_beyond_tie")}}
    results.append(base_row)
    for arm in arms:
        row: dict[str, Any] = {"arm": arm.name, "kind": arm.kind, "setting": arm.setting, "setting_zh": arm.setting_zh}
        if arm.reason:
            results.append({**row, "status": "not_run", "reason": arm.reason, "reason_zh": arm.reason_zh})
            continue
        if arm.name in errors or arm.name not in probes:
            err = errors.get(arm.name, "produced nothing")
            results.append({**row, "status": "failed", "reason": err, "reason_zh": f"失败：{err}"})
            continue
        p = probes[arm.name]
        against = probes["prefix_cache:miss"] if arm.kind == "prefix_cache" else base
        fig, arm_rows = compare(arm.name, p, against, reference, conf, ref_logits, memo)
        if p.prompt_error:
            fig["prefill_not_measured"] = p.prompt_error
        if arm.kind == "prefix_cache":
            miss_cached = sum(c or 0 for c in against.cached_tokens)
            fig["cached_tokens_miss"] = miss_cached
            if all(c is None for c in p.cached_tokens):  # a server that does not report them
                results.append({**row, "status": "failed",
                                "reason": "the server reports no cached prompt tokens (vLLM: "
                                          "--enable-prompt-tokens-details), so a cache hit cannot be shown",
                                "reason_zh": "该服务不报告命中缓存的提示词 token 数（vLLM：--enable-prompt-tokens-details），"
                                             "无法证明命中缓存", **fig})
                continue
            if not fig.get("cached_tokens"):
                results.append({**row, "status": "failed", "reason": "the warm pass hit no cached block",
                                "reason_zh": "第二轮没有命中任何缓存块", **fig})
                continue
        on_target = arm.name == target_arm or (arm.on_baseline and eager_target)
        row.update(status="ok", engine_start_s=p.engine_start_s, reused_engine=arm.on_baseline or
                   (arm.name == target_arm), via_shared_server=served and on_target, wall_s=p.wall_s, **fig)
        row["verdict"] = arm_verdict(row, base_fig, dep.thresholds)
        results.append(row)
        rows += arm_rows
    for r in results:
        pm.validate_ranges({k: v for k, v in r.items() if k != "verdict"}, f"deployment[{r['arm']}]")
    passed = pm.overall([pm.Check(metric=r["arm"], op="==", threshold=1.0, measured=None,
                                  passed=(r.get("verdict") or {}).get("passed")) for r in results])
    block = {"arms": results, "passed": passed, "wall_s": time.perf_counter() - t0,
             "tie_nats": dep.tie_nats, "logprobs_requested": conf.target_logprobs}
    run.add("deployment", block)
    run.save_rows("deployment_positions", rows)
    return Matrix(arms=results, rows=rows, wall_s=block["wall_s"])


# --------------------------------------------------------------------------- plot


def plot(matrix: Matrix | None, path: str | Path, lang: str | None = None) -> Path:
    """Per arm: left, teacher-forced |logprob difference| vs the baseline per position (mean over
    prompts); right, the share of prompts whose free-running output has left the baseline's by
    each generated position."""
    if matrix is None or not matrix.rows:
        raise SectionSkipped("no deployment arm was compared (step 'deployment_matrix')",
                             zh="没有任何部署配置被比较（步骤 'deployment_matrix'）")
    from ... import plotting

    word = plotting.word
    arms = list(dict.fromkeys(r["arm"] for r in matrix.rows))
    with plotting.style(lang or plotting.language(path)) as (plt, lang):
        fig, ((a, b),) = plotting.figure(plt, 3.8, ncols=2)
        for arm in arms:
            pre: dict[int, list[float]] = {}
            first: dict[str, int | None] = {}  # prompt -> first diverged generated position
            longest = 0
            for r in matrix.rows:
                if r["arm"] != arm:
                    continue
                if r["path"] == "prefill" and r["abs_logprob_diff_vs_baseline"] is not None:
                    pre.setdefault(r["position"], []).append(r["abs_logprob_diff_vs_baseline"])
                elif r["path"] == "decode":
                    longest = max(longest, r["position"] + 1)
                    d = first.setdefault(r["prompt_id"], None)
                    if r["diverged"] and (d is None or r["position"] < d):
                        first[r["prompt_id"]] = r["position"]
            if pre:
                xs = sorted(pre)
                a.plot(xs, [sum(pre[x]) / len(pre[x]) for x in xs], "-", lw=1.2, label=arm)
            if first:
                # a prompt that diverged stays diverged; the share is over all of the arm's prompts
                xs = list(range(longest))
                b.step(xs, [sum(d is not None and d <= x for d in first.values()) / len(first) for x in xs],
                       where="post", lw=1.2, label=arm)
        a.set_xlabel(word(lang, "position_axis"))
        a.set_ylabel(word(lang, "dep_logprob_axis"))
        a.set_title(word(lang, "dep_prefill"))
        b.set_xlabel(word(lang, "generated_axis"))
        b.set_ylabel(word(lang, "dep_diverged_axis"))
        b.set_ylim(-0.02, 1.02)
        b.set_title(word(lang, "dep_decode"))
        plotting.legend_below(fig, *b.get_legend_handles_labels(), ncol=4)
        return plotting.save(fig, path)
