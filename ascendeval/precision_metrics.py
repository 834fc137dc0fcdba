"""Pure functions comparing a target's next-token distributions with a reference's.

Everything here takes tensors / plain values and returns numbers; no model, no I/O. The
precision section (`precision.py`) streams one prompt at a time through these functions and
keeps only per-position scalars, so memory is bounded by positions x a few floats, never by
vocab x positions x prompts.

Two scopes, never mixed silently:

* ``full_vocab`` - both sides' full logits are known (transformers targets). KL, cosine, MSE
  and max-abs are computed over the whole vocabulary.
* ``target_returned`` - the target returned only its top-N logprobs (vLLM / OpenAI
  ``prompt_logprobs``). Top-1 agreement, top-k overlap (k <= N) and the reference token's
  logprob are still EXACT; distribution metrics are computed only over the token ids the target
  returned, renormalised there, and carry that label. Missing entries are never filled with a
  sentinel such as -1e9 (that would report the sentinel, not the model).

Numerics: everything is computed in float64 so that identical inputs give exactly agreement 1,
cosine 1 and KL 0; tiny rounding excursions (|x| < 1e-9 outside the valid range) are clipped,
anything larger raises, because an impossible value is a bug, never a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

SCOPE_FULL = "full_vocab"
SCOPE_RETURNED = "target_returned"
_ROUNDING_TOL = 1e-9

# Per-position metric names produced by both scopes (scope-specific ones are added below).
POSITION_KEYS_FULL = (
    "top1_match", "topk_overlap", "cosine", "mse", "max_abs", "kl",
    "ref_token_logprob_ref", "ref_token_logprob_target", "ref_logprob_diff", "ref_top1_margin",
    "target_finite",
)
POSITION_KEYS_RETURNED = (
    "top1_match", "topk_overlap", "cosine_centered_returned", "mse_returned", "max_abs_returned",
    "kl_returned_renorm", "ref_mass_returned", "target_mass_returned", "num_returned",
    "ref_token_logprob_ref", "ref_token_logprob_target", "ref_logprob_diff", "ref_top1_margin",
    "target_finite",
)


def _clip_rounding(x: np.ndarray, lo: float, hi: float, name: str) -> np.ndarray:
    """Clip values that left [lo, hi] by rounding only; a real excursion raises."""
    finite = np.isfinite(x)
    bad = finite & ((x < lo - _ROUNDING_TOL) | (x > hi + _ROUNDING_TOL))
    if bad.any():
        raise ValueError(f"{name}: value {x[bad][0]!r} outside [{lo}, {hi}] beyond rounding - computation bug")
    out = x.copy()
    out[finite] = np.clip(x[finite], lo, hi)
    return out


# --------------------------------------------------------------------------- full vocabulary


def full_vocab_metrics(ref_logits: Any, target_logits: Any, next_tokens: Sequence[int] | Any, k: int = 5,
                       chunk: int = 8) -> dict[str, np.ndarray]:
    """Per-position comparison of two [P, V] logit matrices over the full vocabulary.

    Args:
        ref_logits: reference logits, shape [P, V] (any float dtype, any device).
        target_logits: target logits, same shape.
        next_tokens: the reference sequence's token at each position's next step (length P);
            its logprob under each side is compared.
        k: top-k size for the overlap.
        chunk: positions processed at once; bounds float64 temporaries to chunk x V.

    Returns:
        dict of numpy arrays of length P (see POSITION_KEYS_FULL). ``kl`` is KL(ref || target)
        in nats; ``cosine``, ``mse``, ``max_abs`` are on raw logits; ``ref_logprob_diff`` is
        target minus reference. Rows whose target logits are not finite get NaN distribution
        metrics, ``top1_match`` False and ``target_finite`` False.
    """
    import torch

    ref = torch.as_tensor(ref_logits)
    tgt = torch.as_tensor(target_logits)
    if ref.shape != tgt.shape or ref.dim() != 2:
        raise ValueError(f"logits must both be [positions, vocab]; got {tuple(ref.shape)} and {tuple(tgt.shape)}")
    P, V = ref.shape
    nxt = torch.as_tensor(list(next_tokens) if not torch.is_tensor(next_tokens) else next_tokens, dtype=torch.long)
    if nxt.numel() != P:
        raise ValueError(f"next_tokens has {nxt.numel()} entries for {P} positions")
    if not 1 <= k <= V:
        raise ValueError(f"top_k must be in [1, vocab={V}], got {k}")
    out: dict[str, list[np.ndarray]] = {key: [] for key in POSITION_KEYS_FULL}
    inf = float("inf")
    # Memory: at most four [chunk, V] float64 tensors are alive at once (r, t, then r_lp, t_lp);
    # reductions use vector_norm / in-place ops instead of building d*d, |d|, p*(...) copies.
    # With V = 151,936 and chunk 8 that is ~39 MB, whatever the number of positions.
    for s in range(0, P, max(1, chunk)):
        r = ref[s:s + chunk].detach().to("cpu", torch.float64)
        t = tgt[s:s + chunk].detach().to("cpu", torch.float64)
        n = nxt[s:s + chunk].view(-1, 1)
        finite = torch.isfinite(t).all(dim=1) & torch.isfinite(r).all(dim=1)
        # raw-logit metrics first, while r and t are the only big tensors
        top1 = (r.argmax(-1) == t.argmax(-1)) & finite
        rk = r.topk(k, dim=-1).indices
        tk = t.topk(k, dim=-1).indices
        overlap = (rk.unsqueeze(-1) == tk.unsqueeze(-2)).any(-1).sum(-1).double() / k
        overlap = torch.where(finite, overlap, torch.zeros_like(overlap))  # top-k of NaN logits is arbitrary
        top2 = r.topk(min(2, V), dim=-1).values
        margin = top2[:, 0] - top2[:, -1]
        cos = (r * t).sum(-1) / (torch.linalg.vector_norm(r, dim=-1) * torch.linalg.vector_norm(t, dim=-1))
        d = t.sub(r)
        mse = torch.linalg.vector_norm(d, dim=-1).square() / V
        max_abs = torch.linalg.vector_norm(d, ord=inf, dim=-1)
        del d
        r_lp = torch.log_softmax(r, dim=-1)
        del r
        t_lp = torch.log_softmax(t, dim=-1)
        del t
        ref_tok_ref = r_lp.gather(1, n).squeeze(1)
        ref_tok_tgt = t_lp.gather(1, n).squeeze(1)
        # KL(ref||tgt) = sum p_ref (log p_ref - log p_tgt). log_softmax of finite logits is
        # finite, so an underflowed p_ref (0) times a finite difference contributes exactly 0.
        t_lp.neg_().add_(r_lp)  # t_lp := r_lp - t_lp
        kl = (t_lp.mul_(r_lp.exp_())).sum(-1)  # r_lp := p_ref in place
        del r_lp, t_lp
        nan = torch.full_like(cos, float("nan"))
        for key, val in (
            ("top1_match", top1), ("topk_overlap", overlap), ("cosine", torch.where(finite, cos, nan)),
            ("mse", torch.where(finite, mse, nan)), ("max_abs", torch.where(finite, max_abs, nan)),
            ("kl", torch.where(finite, kl, nan)), ("ref_token_logprob_ref", ref_tok_ref),
            ("ref_token_logprob_target", torch.where(finite, ref_tok_tgt, nan)),
            ("ref_logprob_diff", torch.where(finite, ref_tok_tgt - ref_tok_ref, nan)),
            ("ref_top1_margin", margin), ("target_finite", finite),
        ):
            out[key].append(val.numpy())
    res = {key: np.concatenate(vals) if vals else np.zeros(0) for key, vals in out.items()}
    res["cosine"] = _clip_rounding(res["cosine"], -1.0, 1.0, "cosine")
    res["kl"] = _clip_rounding(res["kl"], 0.0, math.inf, "kl")
    res["topk_overlap"] = _clip_rounding(res["topk_overlap"], 0.0, 1.0, "topk_overlap")
    return res


# --------------------------------------------------------------------------- target top-N only


def returned_entries_metrics(ref_logits_row: Any, target_entries: Mapping[int, float], ref_token: int,
                             k: int = 5) -> dict[str, float]:
    """One position where the target returned only {token_id: logprob} for its top-N (+ the
    actual token), e.g. vLLM ``prompt_logprobs``. The reference row is full-vocabulary.

    Exact here: top1_match, topk_overlap (needs N >= k), ref_logprob_diff (the actual token is
    always returned). Restricted to the returned id set S and labelled so: MSE / max-abs of
    logprobs on S, centered cosine of logprobs on S (shift-invariant, so it compares logit
    shapes), and KL of the two distributions renormalised on S; ``ref_mass_returned`` says how
    much of the reference's probability S covers (KL on S means little when it is small).
    """
    import torch

    if not target_entries:
        raise ValueError("target returned no logprob entries for this position")
    r = torch.as_tensor(ref_logits_row).detach().to("cpu", torch.float64).flatten()
    r_lp = torch.log_softmax(r, dim=-1)
    ids = sorted(int(i) for i in target_entries)
    t_vals = np.array([float(target_entries[i]) for i in ids], dtype=np.float64)
    finite = bool(np.isfinite(t_vals).all())
    r_vals = r_lp[torch.tensor(ids)].numpy()
    # the target's own top-k among what it returned: exact when it returned its top-N with N >= k
    order = np.argsort(-t_vals, kind="stable")
    t_topk = {ids[i] for i in order[:k]}
    r_topk = set(r.topk(k).indices.tolist())
    top1_match = finite and ids[int(order[0])] == int(r.argmax())
    nan = float("nan")
    if ref_token not in target_entries:
        raise ValueError(f"target entries lack the reference token {ref_token}: cannot compare its logprob")
    ref_tok_ref = float(r_lp[ref_token])
    ref_tok_tgt = float(target_entries[ref_token])
    if finite:
        d = t_vals - r_vals
        rc, tc = r_vals - r_vals.mean(), t_vals - t_vals.mean()
        denom = float(np.linalg.norm(rc) * np.linalg.norm(tc))
        cos = float(rc @ tc / denom) if denom > 0 else (1.0 if np.allclose(rc, tc) else nan)
        # renormalise both on S: proper distributions, so KL >= 0 holds
        p = np.exp(r_vals - np.logaddexp.reduce(r_vals))
        lq = t_vals - np.logaddexp.reduce(t_vals)
        lp = np.log(p, where=p > 0, out=np.full_like(p, -np.inf))
        kl = float(np.sum(np.where(p > 0, p * (lp - lq), 0.0)))
        mse, max_abs = float(np.mean(d * d)), float(np.max(np.abs(d)))
    else:
        cos = kl = mse = max_abs = nan
    top2 = r.topk(min(2, r.numel())).values
    row = {
        "top1_match": bool(top1_match),
        "topk_overlap": len(t_topk & r_topk) / k if finite else 0.0,  # top-k of NaN values is arbitrary
        "cosine_centered_returned": cos,
        "mse_returned": mse,
        "max_abs_returned": max_abs,
        "kl_returned_renorm": kl,
        "ref_mass_returned": float(np.exp(r_vals).sum()),
        "target_mass_returned": float(np.exp(t_vals[np.isfinite(t_vals)]).sum()),
        "num_returned": len(ids),
        "ref_token_logprob_ref": ref_tok_ref,
        "ref_token_logprob_target": ref_tok_tgt,
        "ref_logprob_diff": ref_tok_tgt - ref_tok_ref if finite else nan,
        "ref_top1_margin": float(top2[0] - top2[-1]),
        "target_finite": finite,
    }
    for key, lo, hi in (("cosine_centered_returned", -1.0, 1.0), ("kl_returned_renorm", 0.0, math.inf),
                        ("ref_mass_returned", 0.0, 1.0), ("target_mass_returned", 0.0, 1.0)):
        row[key] = float(_clip_rounding(np.array([row[key]], dtype=np.float64), lo, hi, key)[0])
    return row


# --------------------------------------------------------------------------- two engines' top-N


def entries_vs_entries(base: Mapping[int, float], arm: Mapping[int, float], token: int, k: int = 5
                       ) -> dict[str, Any]:
    """One position where two engines (a deployment arm and its baseline) each returned their
    top-N {token_id: logprob} plus the token actually at the next position (`token`).

    Exact: top1_match (both sides' argmax among what they returned, i.e. their true top-1),
    topk_overlap (needs N >= k) and the logprob difference of `token` (arm minus baseline).
    ``kl_common_renorm`` is KL(base || arm) of the two distributions renormalised on the ids
    both returned, labelled so; ``base_margin`` is how much the baseline preferred its own top-1
    over the arm's top-1 (0 when they agree; a lower bound when the arm's pick is outside the
    baseline's returned ids), the measure of whether a flip happened at a near tie.
    """
    if not base or not arm:
        raise ValueError("both engines must return logprob entries for the position")
    if token not in base or token not in arm:
        raise ValueError(f"token {token} missing from the returned entries: cannot compare its logprob")
    b_ids, a_ids = list(base), list(arm)
    b_vals = np.array([float(base[i]) for i in b_ids], dtype=np.float64)
    a_vals = np.array([float(arm[i]) for i in a_ids], dtype=np.float64)
    finite = bool(np.isfinite(b_vals).all() and np.isfinite(a_vals).all())
    nan = float("nan")
    b_top = b_ids[int(np.argmax(np.where(np.isfinite(b_vals), b_vals, -np.inf)))]
    a_top = a_ids[int(np.argmax(np.where(np.isfinite(a_vals), a_vals, -np.inf)))] if finite else None
    b_k = {b_ids[i] for i in np.argsort(-b_vals, kind="stable")[:k]}
    a_k = {a_ids[i] for i in np.argsort(-a_vals, kind="stable")[:k]}
    common = sorted(set(b_ids) & set(a_ids))
    kl = nan
    if finite and common:
        bc = np.array([base[i] for i in common], dtype=np.float64)
        ac = np.array([arm[i] for i in common], dtype=np.float64)
        lp = bc - np.logaddexp.reduce(bc)
        lq = ac - np.logaddexp.reduce(ac)
        kl = float(_clip_rounding(np.array([np.sum(np.exp(lp) * (lp - lq))]), 0.0, math.inf, "kl_common_renorm")[0])
    if a_top is None or a_top == b_top:
        margin = 0.0 if a_top is not None else nan
    else:
        # the arm's pick as the baseline saw it; outside the baseline's top-N it is at most its lowest
        other = float(base[a_top]) if a_top in base else float(np.min(b_vals))
        margin = float(base[b_top]) - other
    diff = float(arm[token]) - float(base[token]) if finite else nan
    return {
        "top1_match": bool(finite and a_top == b_top),
        "topk_overlap": len(a_k & b_k) / k if finite else 0.0,
        "logprob_diff": diff,
        "kl_common_renorm": kl,
        "base_margin": margin,
        "finite": finite,
    }


# --------------------------------------------------------------------------- aggregation


def _mean(vals: Iterable[float]) -> float | None:
    a = np.asarray([v for v in vals if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def _agg(vals: Iterable[float], fn: Any) -> float | None:
    a = np.asarray([v for v in vals if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(fn(a)) if a.size else None


def summarize_positions(rows: Sequence[Mapping[str, Any]], scope: str) -> dict[str, Any]:
    """Aggregate per-position rows (as produced above, one dict per position) into the summary
    stored in the record. Rates are over ALL positions (a non-finite target row counts as a
    mismatch); distribution metrics are averaged over the positions whose target was finite,
    and ``num_nonfinite_positions`` says how many were left out."""
    n = len(rows)
    finite_rows = [r for r in rows if r.get("target_finite", True)]
    out: dict[str, Any] = {
        "scope": scope,
        "num_positions": n,
        "num_nonfinite_positions": n - len(finite_rows),
        "top1_agreement": (sum(bool(r["top1_match"]) for r in rows) / n) if n else None,
        "topk_overlap": _mean(r["topk_overlap"] for r in rows) if n else None,
        "mean_ref_logprob_diff": _mean(r["ref_logprob_diff"] for r in finite_rows),
        "mean_abs_ref_logprob_diff": _mean(abs(r["ref_logprob_diff"]) for r in finite_rows
                                           if r["ref_logprob_diff"] is not None),
        "max_abs_ref_logprob_diff": _agg((abs(r["ref_logprob_diff"]) for r in finite_rows
                                          if r["ref_logprob_diff"] is not None), np.max),
    }
    if scope == SCOPE_FULL:
        out.update({
            "mean_cosine": _mean(r["cosine"] for r in finite_rows),
            "min_cosine": _agg((r["cosine"] for r in finite_rows), np.min),
            "mean_mse": _mean(r["mse"] for r in finite_rows),
            "mean_logit_max_abs": _mean(r["max_abs"] for r in finite_rows),
            "logit_max_abs": _agg((r["max_abs"] for r in finite_rows), np.max),
            "mean_kl": _mean(r["kl"] for r in finite_rows),
            "max_kl": _agg((r["kl"] for r in finite_rows), np.max),
            "p99_kl": _agg((r["kl"] for r in finite_rows), lambda a: np.percentile(a, 99)),
        })
    elif scope == SCOPE_RETURNED:
        out.update({
            "mean_cosine_centered_returned": _mean(r["cosine_centered_returned"] for r in finite_rows),
            "min_cosine_centered_returned": _agg((r["cosine_centered_returned"] for r in finite_rows), np.min),
            "mean_mse_returned": _mean(r["mse_returned"] for r in finite_rows),
            "logprob_max_abs_returned": _agg((r["max_abs_returned"] for r in finite_rows), np.max),
            "mean_kl_returned_renorm": _mean(r["kl_returned_renorm"] for r in finite_rows),
            "max_kl_returned_renorm": _agg((r["kl_returned_renorm"] for r in finite_rows), np.max),
            "mean_ref_mass_returned": _mean(r["ref_mass_returned"] for r in finite_rows),
        })
    else:
        raise ValueError(f"unknown scope {scope!r}; allowed: {SCOPE_FULL}, {SCOPE_RETURNED}")
    return out


# --------------------------------------------------------------------------- free running


@dataclass
class FreeRunComparison:
    """Greedy continuations of both sides from the same prompt."""

    num_compared: int  # positions compared: max of the two lengths (a missing token is a mismatch)
    num_agree: int  # position-wise equal tokens
    prefix_match: int  # tokens equal before the first divergence
    first_divergence: int | None  # None: identical continuations

    @property
    def token_agreement(self) -> float | None:
        return self.num_agree / self.num_compared if self.num_compared else None


def compare_continuations(ref_ids: Sequence[int], target_ids: Sequence[int]) -> FreeRunComparison:
    """Position-wise agreement and first divergence of two greedy continuations.

    A length difference (one side stopped at EOS earlier) counts as a divergence at the shorter
    length: the tokens are missing there, so they cannot agree.
    """
    n = max(len(ref_ids), len(target_ids))
    agree = sum(1 for a, b in zip(ref_ids, target_ids) if a == b)
    first = next((i for i, (a, b) in enumerate(zip(ref_ids, target_ids)) if a != b), None)
    if first is None and len(ref_ids) != len(target_ids):
        first = min(len(ref_ids), len(target_ids))
    return FreeRunComparison(num_compared=n, num_agree=agree, prefix_match=n if first is None else first,
                             first_divergence=first)


# --------------------------------------------------------------------------- hidden states


class HiddenStateAccumulator:
    """Running per-layer sums across prompts: mean L2 norm of each side's hidden vectors and the
    relative difference ||h_t - h_r||_F / ||h_r||_F. Keeps layers x 4 floats, nothing else."""

    def __init__(self) -> None:
        self.n_vectors = 0
        self.ref_norm_sum: np.ndarray | None = None
        self.tgt_norm_sum: np.ndarray | None = None
        self.diff_sq: np.ndarray | None = None
        self.ref_sq: np.ndarray | None = None

    def add(self, ref_layers: Sequence[Any], target_layers: Sequence[Any]) -> None:
        """Each argument: one [T, H] tensor per layer (same T, H on both sides)."""
        import torch

        if len(ref_layers) != len(target_layers):
            raise ValueError(f"layer count differs: reference {len(ref_layers)}, target {len(target_layers)}")
        rn, tn, dq, rq = [], [], [], []
        T = None
        for r, t in zip(ref_layers, target_layers):
            r = torch.as_tensor(r).detach().to("cpu", torch.float64).reshape(-1, r.shape[-1])
            t = torch.as_tensor(t).detach().to("cpu", torch.float64).reshape(-1, t.shape[-1])
            T = r.shape[0]
            rn.append(float(r.norm(dim=-1).sum()))
            tn.append(float(t.norm(dim=-1).sum()))
            dq.append(float(((t - r) ** 2).sum()))
            rq.append(float((r ** 2).sum()))
        arrs = [np.array(x) for x in (rn, tn, dq, rq)]
        if self.ref_norm_sum is None:
            self.ref_norm_sum, self.tgt_norm_sum, self.diff_sq, self.ref_sq = arrs
        else:
            if len(arrs[0]) != len(self.ref_norm_sum):
                raise ValueError("layer count changed between prompts")
            self.ref_norm_sum += arrs[0]
            self.tgt_norm_sum += arrs[1]
            self.diff_sq += arrs[2]
            self.ref_sq += arrs[3]
        self.n_vectors += T or 0

    def rows(self) -> list[dict[str, Any]]:
        if self.ref_norm_sum is None or not self.n_vectors:
            return []
        out = []
        for i in range(len(self.ref_norm_sum)):
            rel = math.sqrt(self.diff_sq[i] / self.ref_sq[i]) if self.ref_sq[i] > 0 else None
            out.append({
                "layer": i,
                "ref_mean_norm": float(self.ref_norm_sum[i] / self.n_vectors),
                "target_mean_norm": float(self.tgt_norm_sum[i] / self.n_vectors),
                "rel_diff": rel if rel is None or math.isfinite(rel) else None,
            })
        return out


# --------------------------------------------------------------------------- verdict / ranges


@dataclass
class Check:
    metric: str
    op: str  # ">=" or "<=" or "=="
    threshold: float
    measured: float | None
    passed: bool | None  # None: not measured, so neither pass nor fail

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold,
                "measured": self.measured, "passed": self.passed}


def check(metric: str, measured: float | None, op: str, threshold: float) -> Check:
    if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
        return Check(metric, op, threshold, None, None)
    if op == ">=":
        ok = measured >= threshold
    elif op == "<=":
        ok = measured <= threshold
    elif op == "==":
        ok = measured == threshold
    else:
        raise ValueError(f"unknown comparison {op!r}; allowed: >=, <=, ==")
    return Check(metric, op, threshold, float(measured), bool(ok))


def overall(checks: Sequence[Check]) -> bool | None:
    """False if any check failed; True if all measured checks passed and at least one was
    measured; None if nothing could be measured."""
    measured = [c for c in checks if c.passed is not None]
    if any(c.passed is False for c in measured):
        return False
    return True if measured else None


# name pattern -> valid closed interval. Explicit list: these are the keys this section writes.
_RANGES: tuple[tuple[str, float, float], ...] = (
    ("top1_agreement", 0.0, 1.0), ("topk_overlap", 0.0, 1.0), ("token_agreement", 0.0, 1.0),
    ("prefix_agreement", 0.0, 1.0), ("ref_mass_returned", 0.0, 1.0), ("target_mass_returned", 0.0, 1.0),
    ("cosine", -1.0, 1.0), ("kl", 0.0, math.inf), ("mse", 0.0, math.inf), ("max_abs", 0.0, math.inf),
    ("mean_norm", 0.0, math.inf), ("rel_diff", 0.0, math.inf), ("abs_ref_logprob_diff", 0.0, math.inf),
    ("num_", 0.0, math.inf), ("_s", 0.0, math.inf),
)


def range_problems(obj: Any, path: str = "precision") -> list[str]:
    """Every impossible value in a (nested) metrics structure: cosine outside [-1, 1], KL / MSE /
    norms negative, rates outside [0, 1], NaN/inf where a number is stored. Empty list = all
    possible. Matching is on the leaf key, by substring, first rule wins."""
    problems: list[str] = []

    def walk(o: Any, p: str, key: str) -> None:
        if isinstance(o, Mapping):
            for k2, v in o.items():
                walk(v, f"{p}.{k2}", str(k2))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{p}[{i}]", key)
        elif isinstance(o, (int, float, np.floating, np.integer)) and not isinstance(o, bool):
            x = float(o)
            if not math.isfinite(x):
                problems.append(f"{p}: {x} is not a finite number (store None for 'not measured')")
                return
            for pat, lo, hi in _RANGES:
                hit = key.endswith(pat) if pat == "_s" else (key.startswith(pat) if pat == "num_" else pat in key)
                if hit:
                    if "logprob_diff" in key and "abs" not in key:
                        return  # signed by nature
                    if not lo <= x <= hi:
                        problems.append(f"{p}: {x} outside [{lo}, {hi}]")
                    return

    walk(obj, path, "")
    return problems


def validate_ranges(obj: Any, path: str = "precision") -> None:
    """Raise ValueError naming every impossible value (used before anything is saved)."""
    problems = range_problems(obj, path)
    if problems:
        raise ValueError("impossible precision values: " + "; ".join(problems[:10])
                         + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""))
