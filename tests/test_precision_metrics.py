"""Pure logits-comparison functions: exact values on hand-made inputs, ranges, scopes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ascendeval import precision_metrics as pm


def _logits(p=6, v=50, seed=0):
    return torch.randn(p, v, generator=torch.Generator().manual_seed(seed)) * 3


def test_identical_logits_are_perfect():
    a = _logits()
    nxt = a.argmax(-1)
    m = pm.full_vocab_metrics(a, a.clone(), nxt, k=5, chunk=4)
    assert m["top1_match"].all() and (m["topk_overlap"] == 1.0).all()
    assert np.allclose(m["cosine"], 1.0, atol=1e-12) and (m["cosine"] <= 1.0).all()
    assert (m["kl"] == 0.0).all() and (m["mse"] == 0.0).all() and (m["max_abs"] == 0.0).all()
    assert (m["ref_logprob_diff"] == 0.0).all()


def test_known_values_against_direct_formulas():
    a, b = _logits(seed=1), _logits(seed=2)
    nxt = torch.tensor([0, 1, 2, 3, 4, 5])
    m = pm.full_vocab_metrics(a, b, nxt, k=3)
    a64, b64 = a.double(), b.double()
    la, lb = torch.log_softmax(a64, -1), torch.log_softmax(b64, -1)
    kl = (la.exp() * (la - lb)).sum(-1)
    cos = torch.nn.functional.cosine_similarity(a64, b64, dim=-1)
    assert np.allclose(m["kl"], kl.numpy(), rtol=1e-10)
    assert np.allclose(m["cosine"], cos.numpy(), rtol=1e-10)
    assert np.allclose(m["mse"], ((a64 - b64) ** 2).mean(-1).numpy())
    assert np.allclose(m["ref_logprob_diff"], (lb.gather(1, nxt.view(-1, 1)) - la.gather(1, nxt.view(-1, 1))).squeeze(1).numpy())
    assert (m["kl"] > 0).all() and (np.abs(m["cosine"]) < 1).all()
    overlap = [len(set(a[i].topk(3).indices.tolist()) & set(b[i].topk(3).indices.tolist())) / 3 for i in range(6)]
    assert np.allclose(m["topk_overlap"], overlap)


def test_shift_invariance_of_kl_but_not_cosine():
    a = _logits(seed=3)
    m = pm.full_vocab_metrics(a, a + 7.0, a.argmax(-1), k=5)
    assert np.allclose(m["kl"], 0.0, atol=1e-12)  # same distribution
    assert m["top1_match"].all()
    assert (m["cosine"] < 1.0).all()  # raw-logit cosine sees the shift (that is what reports print)


def test_nonfinite_target_rows_are_marked_not_averaged():
    a = _logits()
    b = a.clone()
    b[2, 7] = float("nan")
    m = pm.full_vocab_metrics(a, b, a.argmax(-1), k=5)
    assert not m["target_finite"][2] and not m["top1_match"][2] and math.isnan(m["kl"][2])
    assert m["topk_overlap"][2] == 0.0  # one NaN among the logits: its top-k is no overlap
    rows = [{k: m[k][i] for k in m} for i in range(6)]
    s = pm.summarize_positions(rows, pm.SCOPE_FULL)
    assert s["num_nonfinite_positions"] == 1
    assert s["top1_agreement"] == pytest.approx(5 / 6)  # the broken row counts as a miss
    assert s["mean_kl"] == 0.0  # over the 5 finite rows


def test_returned_entries_exact_parts_match_full_vocab():
    """With the target's top-N returned, top-1 / top-k / reference-token logprob equal the
    full-vocabulary values; restricted metrics stay in range and are labelled."""
    a, b = _logits(seed=4), _logits(seed=5) * 0.2 + _logits(seed=4)
    nxt = torch.tensor([3, 9, 1, 0, 44, 12])
    full = pm.full_vocab_metrics(a, b, nxt, k=5)
    lb = torch.log_softmax(b.double(), -1)
    for i in range(6):
        top = lb[i].topk(20)
        entries = {int(t): float(v) for t, v in zip(top.indices, top.values)}
        entries[int(nxt[i])] = float(lb[i, nxt[i]])
        r = pm.returned_entries_metrics(a[i], entries, int(nxt[i]), k=5)
        assert r["top1_match"] == bool(full["top1_match"][i])
        assert r["topk_overlap"] == pytest.approx(full["topk_overlap"][i])
        assert r["ref_logprob_diff"] == pytest.approx(full["ref_logprob_diff"][i], abs=1e-9)
        assert r["kl_returned_renorm"] >= 0 and -1 <= r["cosine_centered_returned"] <= 1
        assert 0 < r["ref_mass_returned"] <= 1 and 0 < r["target_mass_returned"] <= 1
        assert r["num_returned"] in (20, 21)


def test_returned_entries_identical_is_perfect_and_needs_the_token():
    a = _logits(p=1)[0]
    la = torch.log_softmax(a.double(), -1)
    entries = {int(t): float(la[t]) for t in la.topk(10).indices}
    tok = int(la.argmax())
    r = pm.returned_entries_metrics(a, entries, tok, k=5)
    assert r["top1_match"] and r["topk_overlap"] == 1.0 and r["kl_returned_renorm"] == pytest.approx(0, abs=1e-15)
    assert r["cosine_centered_returned"] == pytest.approx(1.0)
    missing = int(la.argmin())
    with pytest.raises(ValueError, match="lack the reference token"):
        pm.returned_entries_metrics(a, entries, missing, k=5)


def test_compare_continuations():
    c = pm.compare_continuations([1, 2, 3, 4], [1, 2, 9, 4])
    assert (c.first_divergence, c.prefix_match, c.num_agree, c.token_agreement) == (2, 2, 3, 0.75)
    same = pm.compare_continuations([1, 2], [1, 2])
    assert same.first_divergence is None and same.token_agreement == 1.0
    short = pm.compare_continuations([1, 2, 3], [1, 2])
    assert short.first_divergence == 2 and short.token_agreement == pytest.approx(2 / 3)


def test_hidden_state_accumulator():
    acc = pm.HiddenStateAccumulator()
    r = [torch.ones(3, 4), torch.ones(3, 4) * 2]
    t = [torch.ones(3, 4), torch.ones(3, 4) * 2.2]
    acc.add(r, t)
    acc.add(r, t)
    rows = acc.rows()
    assert rows[0] == {"layer": 0, "ref_mean_norm": 2.0, "target_mean_norm": 2.0, "rel_diff": 0.0}
    assert rows[1]["ref_mean_norm"] == pytest.approx(4.0) and rows[1]["rel_diff"] == pytest.approx(0.1)


def test_verdict_checks():
    assert pm.check("x", 0.995, ">=", 0.99).passed is True
    assert pm.check("x", 0.5, ">=", 0.99).passed is False
    assert pm.check("kl", 0.2, "<=", 0.01).passed is False
    assert pm.check("x", None, ">=", 0.9).passed is None
    assert pm.overall([pm.check("a", 1, ">=", 0), pm.check("b", None, ">=", 0)]) is True
    assert pm.overall([pm.check("a", 1, ">=", 0), pm.check("b", 0, ">=", 1)]) is False
    assert pm.overall([pm.check("b", None, ">=", 1)]) is None


@pytest.mark.parametrize("metrics,fragment", [
    ({"mean_cosine": 1.0009}, "mean_cosine: 1.0009 outside [-1.0, 1.0]"),
    ({"mean_kl": -0.1}, "mean_kl: -0.1 outside"),
    ({"top1_agreement": 1.2}, "top1_agreement: 1.2 outside"),
    ({"layers": [{"rel_diff": -1.0}]}, "rel_diff"),
    ({"mean_mse": float("nan")}, "not a finite number"),
])
def test_validate_ranges_rejects_impossible_values(metrics, fragment):
    with pytest.raises(ValueError, match="impossible precision values") as exc:
        pm.validate_ranges(metrics)
    assert fragment in str(exc.value)


def test_validate_ranges_accepts_signed_diffs_and_none():
    pm.validate_ranges({"mean_ref_logprob_diff": -0.3, "mean_kl": None, "mean_cosine": -0.2, "first_divergence": 3})
