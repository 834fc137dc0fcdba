"""A correctness guard on every speed figure: a throughput or latency is only a figure if the
outputs it timed are sane.

A reported 7x "slowdown" that was really NaN output is the case this exists for. Each measurement
that generates hands its outputs to `OutputGuard.keep(figure, outputs)`; the guard counts empty
outputs and non-finite logprobs over all of them and keeps a few (params `samples`). `check`
then scores each kept sample's first tokens under the float32 reference, teacher-forced (one
forward of prompt + output):

* greedy outputs: each checked token must be the reference's top-1 there, or within `tie_nats`
  of it (a near tie: bfloat16 against float32 may pick either);
* sampled outputs (temperature > 0, as `vllm bench latency/throughput` sample): the tokens'
  mean negative log-likelihood under the reference may exceed the reference's own mean entropy
  at those positions by at most `sampled_excess_nats` (a sample from the same distribution has
  an excess near 0; garbage or a constant token has several nats).

The guard compares with the reference, never with an idea of "good text": the demo model's
repetitive output is the model, and passes. `check` also takes vLLM's own count of requests
with NaN logits (`vllm:corrupted_requests`, reported when VLLM_COMPUTE_NANS_IN_LOGITS=1 is in
the target's env); the sections do not read that counter yet (it would need a per-figure delta
of each engine's counters), so it is None in their records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

VALID, INVALID, UNCHECKED = "valid", "invalid", "unchecked"


@dataclass
class Sample:
    prompt_ids: list[int]
    output_ids: list[int]


@dataclass
class FigureOutputs:
    """What one speed figure generated: counts over all its requests, a few samples."""

    sampled: bool  # temperature > 0
    ignore_eos: bool
    num_requests: int = 0
    num_empty: int = 0
    num_nonfinite: int = 0  # requests with a non-finite logprob among those the engine returned
    samples: list[Sample] = field(default_factory=list)


def _parts(out: Any) -> tuple[list[int], list[int], list[Any] | None] | None:
    """(prompt ids, output ids, per-token logprob dicts or None) of a Generation, a vLLM
    RequestOutput or a (prompt_ids, output_ids) pair; None when the ids are unknown."""
    if isinstance(out, tuple) and len(out) == 2:
        return list(out[0] or []), list(out[1] or []), None
    if hasattr(out, "outputs") and hasattr(out, "prompt_token_ids"):  # vllm RequestOutput
        c = out.outputs[0]
        lps = None
        if getattr(c, "logprobs", None) is not None:
            lps = [{t: float(getattr(v, "logprob", v)) for t, v in e.items()} if e else None for e in c.logprobs]
        return list(out.prompt_token_ids or []), list(c.token_ids), lps
    if hasattr(out, "token_ids") and hasattr(out, "prompt_token_ids"):  # engines.base.Generation
        return list(out.prompt_token_ids or []), list(out.token_ids), out.logprobs
    return None


def _nonfinite(logprobs: list[Any] | None) -> bool:
    return any(not math.isfinite(v) for e in (logprobs or []) if e for v in e.values())


class OutputGuard:
    """Collects what each figure generated; `check` decides valid / invalid per figure."""

    def __init__(self, conf: Any):
        self.conf = conf
        self.figures: dict[str, FigureOutputs] = {}

    def keep(self, figure: str, outputs: Iterable[Any], sampled: bool = False, ignore_eos: bool = True) -> None:
        """Count and sample the outputs of one measurement (called once or more per figure)."""
        f = self.figures.setdefault(figure, FigureOutputs(sampled=sampled, ignore_eos=ignore_eos))
        for out in outputs:
            parts = _parts(out)
            if parts is None:
                continue
            prompt_ids, output_ids, lps = parts
            f.num_requests += 1
            f.num_empty += not output_ids
            f.num_nonfinite += _nonfinite(lps)
            if output_ids and prompt_ids and len(f.samples) < self.conf.samples:
                f.samples.append(Sample(prompt_ids, output_ids))

    def check(self, reference: Any | None, corrupted_requests: int | None = None) -> dict[str, dict[str, Any]]:
        """One result per figure (see module docstring). `reference`: an hf engine (float32) or
        None (then only emptiness, finiteness and vLLM's own flag are checked)."""
        out: dict[str, dict[str, Any]] = {}
        for name, f in self.figures.items():
            rows = [r for s in f.samples for r in score_under_reference(reference, s, self.conf.check_tokens)] \
                if reference is not None else []
            out[name] = judge(f, rows, self.conf, corrupted_requests)
        return out


def score_under_reference(reference: Any, sample: Sample, n_tokens: int) -> list[dict[str, Any]]:
    """The first `n_tokens` output tokens of `sample` under the reference, teacher-forced: per
    token its reference logprob, the reference's top-1 and its logprob, and the reference's
    entropy there (nats)."""
    import torch

    out_ids = sample.output_ids[:n_tokens]
    ids = sample.prompt_ids + out_ids
    logits = reference.forward_logits(ids).logits[0, len(sample.prompt_ids) - 1: len(ids) - 1].float().cpu()
    lp = torch.log_softmax(logits.double(), dim=-1)
    rows = []
    for j, tok in enumerate(out_ids):
        row_lp = lp[j]
        top = int(row_lp.argmax())
        entropy = float(-(row_lp.exp() * row_lp).nan_to_num(0.0).sum())
        rows.append({"position": j, "token": int(tok), "token_logprob": float(row_lp[tok]), "ref_top1": top,
                     "ref_top1_logprob": float(row_lp[top]), "ref_entropy": entropy})
    return rows


def judge(f: FigureOutputs, rows: list[dict[str, Any]], conf: Any, corrupted_requests: int | None = None
          ) -> dict[str, Any]:
    """valid / invalid / unchecked for one figure, with the figures behind it and a reason."""
    reasons: list[tuple[str, str]] = []  # (en, zh): the card is written in either language
    if f.num_requests and f.ignore_eos and f.num_empty:
        reasons.append((f"{f.num_empty} of {f.num_requests} outputs empty",
                        f"{f.num_requests} 个输出中有 {f.num_empty} 个为空"))
    if f.num_nonfinite:
        reasons.append((f"{f.num_nonfinite} of {f.num_requests} outputs with non-finite logprobs",
                        f"{f.num_requests} 个输出中有 {f.num_nonfinite} 个的 logprob 非有限值"))
    if corrupted_requests:
        reasons.append((f"vLLM counted {corrupted_requests} requests with NaN logits",
                        f"vLLM 统计到 {corrupted_requests} 个请求的 logits 含 NaN"))
    gaps = [r["ref_top1_logprob"] - r["token_logprob"] for r in rows]
    res: dict[str, Any] = {
        "num_requests": f.num_requests, "num_empty": f.num_empty, "num_nonfinite": f.num_nonfinite,
        "corrupted_requests": corrupted_requests, "sampled": f.sampled,
        "num_samples": len(f.samples), "num_tokens_checked": len(rows),
        "ref_top1_agreement": sum(g == 0 or r["ref_top1"] == r["token"] for g, r in zip(gaps, rows)) / len(rows)
        if rows else None,
        "max_gap_nats": max(gaps) if gaps else None,
        "excess_nll_nats": None,
    }
    nonfinite_ref = [g for g in gaps if not math.isfinite(g)]
    if rows and f.sampled:
        nll = [-r["token_logprob"] for r in rows]
        ent = [r["ref_entropy"] for r in rows]
        excess = (sum(nll) - sum(ent)) / len(rows) if not nonfinite_ref else math.inf
        res["excess_nll_nats"] = excess
        if excess > conf.sampled_excess_nats:
            reasons.append((f"sampled tokens {excess:.2f} nats less likely under the reference than its own "
                            f"samples (limit {conf.sampled_excess_nats})",
                            f"采样得到的 token 在参考模型下的负对数似然比其自身熵高 {excess:.2f} nats"
                            f"（上限 {conf.sampled_excess_nats}）"))
    elif rows:
        beyond = [g for g in gaps if g > conf.tie_nats or not math.isfinite(g)]
        if beyond:
            reasons.append((f"{len(beyond)} of {len(rows)} checked tokens are not the reference's greedy choice "
                            f"(largest gap {max(beyond):.2f} nats > tie {conf.tie_nats})",
                            f"检查的 {len(rows)} 个 token 中有 {len(beyond)} 个不是参考模型的贪心选择"
                            f"（最大差距 {max(beyond):.2f} nats > 并列容差 {conf.tie_nats}）"))
    if reasons:
        res.update(status=INVALID, reason="; ".join(r[0] for r in reasons), reason_zh="；".join(r[1] for r in reasons))
    elif not rows:
        res.update(status=UNCHECKED,
                   reason="no output compared with the reference" if f.num_requests else "no outputs kept",
                   reason_zh="没有输出与参考模型比较" if f.num_requests else "没有保留任何输出")
    else:
        res.update(status=VALID, reason=None, reason_zh=None)
    return res


def check_run(run: Any, guard: OutputGuard | None, corrupted_requests: int | None = None) -> dict[str, Any]:
    """The guard step of a section: score what `guard` kept under the float32 reference (an hf
    engine started through `run`, so its start is in engine_starts, and closed here), record
    `output_guard` ({figure: result}) and return it."""
    from .errors import SectionSkipped

    conf = run.cfg.output_guard
    if not conf.enabled:
        raise SectionSkipped("output_guard.enabled is off in params", zh="参数文件中已关闭 output_guard.enabled")
    if guard is None or not guard.figures:
        raise SectionSkipped("no measurement produced outputs to check", zh="没有测量产生可检查的输出")
    reference = None
    if conf.reference and any(f.samples for f in guard.figures.values()):
        reference = run.reference("guard_reference", device=conf.reference_device, dtype="float32")
    try:
        results = guard.check(reference, corrupted_requests)
    finally:
        if reference is not None:
            reference.close()
    run.add("output_guard", results)
    return results


def invalid_reason(metrics: dict[str, Any] | Any, figure: str, lang: str = "en") -> str | None:
    """The guard's reason (in `lang`) when `figure` of a section's metrics was judged invalid, else None."""
    guard = metrics.get("output_guard") if isinstance(metrics, dict) else getattr(metrics, "output_guard", None)
    if not guard:
        return None
    res = guard.get(figure) if isinstance(guard, dict) else None
    if res is None:
        return None
    status = res.get("status") if isinstance(res, dict) else getattr(res, "status", None)
    key = "reason_zh" if lang == "zh" else "reason"
    reason = res.get(key) if isinstance(res, dict) else getattr(res, key, None)
    return (reason or "outputs degenerate") if status == INVALID else None
