"""The performance section's verify rule: recompute its summaries from its raw rows (`ascendeval verify`)."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...rechecks import VerifyResult, guard_rule, is_num, mean, pct, sidecar_rows


def rule(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    rows = sidecar_rows(run_dir, "performance", "latency", res)
    lat_rows = [r for r in rows if r.get("kind") == "latency"]
    s = m.get("latency")
    if lat_rows and isinstance(s, dict):
        from ...metrics import latency_summary

        recomputed = latency_summary([r["latency_s"] for r in lat_rows])
        for k, v in recomputed.items():
            if k in s:
                res.same(f"performance.latency.{k}", s[k], v)
        if is_num(s.get("batch_size")) and is_num(s.get("output_len")) and is_num(s.get("avg_latency_s")):
            res.same("performance.latency.generation_tok_per_s", s.get("generation_tok_per_s"),
                     s["batch_size"] * s["output_len"] / s["avg_latency_s"])
    e2e = m.get("e2e_latency")
    if isinstance(e2e, list):
        by_len: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            if r.get("kind") == "e2e":
                by_len[r["output_len"]].append(r["latency_s"])
        for point in e2e:
            times = by_len.get(point.get("output_len"))
            if times:
                res.same(f"performance.e2e_latency[{point['output_len']}].mean_latency_s", point.get("mean_latency_s"),
                         float(np.mean(times)))
                res.same(f"performance.e2e_latency[{point['output_len']}].output_tok_per_s",
                         point.get("output_tok_per_s"), point["output_len"] / float(np.mean(times)))
    _serving(res, m, run_dir)
    _client(res, m.get("serving") or [], m.get("loadgen_calibration"),
            sidecar_rows(run_dir, "performance", "client_calibration", res) if m.get("loadgen_calibration") else [])
    guard_rule(res, "performance", m.get("output_guard"))


def _serving(res: VerifyResult, m: dict[str, Any], run_dir: Path) -> None:
    rows = sidecar_rows(run_dir, "performance", "requests", res)
    for i, r in enumerate(rows):
        where = f"performance.requests.jsonl[{i}]"
        res.checks += 1
        if not r.get("success"):
            continue
        ttft, e2el, n = r.get("ttft_ms"), r.get("e2el_ms"), r.get("output_tokens")
        if is_num(ttft) and is_num(e2el) and ttft > e2el * (1 + 1e-9) + 1e-9:
            res.problem(where, f"ttft_ms {ttft} > e2el_ms {e2el}")
        if is_num(n) and is_num(r.get("max_tokens")) and n > r["max_tokens"]:
            res.problem(where, f"output_tokens {n} > max_tokens {r['max_tokens']}")
        ct = r.get("chunk_tokens")
        if isinstance(ct, list) and is_num(n) and sum(ct) != n:
            res.problem(where, f"chunk_tokens sum to {sum(ct)} but usage says output_tokens {n}")
        if r.get("usage_reported") and n is None:
            res.problem(where, "usage reported but output_tokens is missing")
        if is_num(ttft) and is_num(e2el) and is_num(n) and n > 1:
            res.same(f"{where}.tpot_ms", r.get("tpot_ms"), (e2el - ttft) / (n - 1))
        itl = r.get("itl_ms")
        if isinstance(itl, list) and is_num(r.get("num_chunks")) and r["num_chunks"] > 0 and len(itl) != r["num_chunks"] - 1:
            res.problem(where, f"{len(itl)} inter-chunk gaps for {r['num_chunks']} chunks")
    points = m.get("serving")
    if not rows or not isinstance(points, list):
        return
    groups: "OrderedDict[tuple, list[dict]]" = OrderedDict()
    for r in rows:
        if not r.get("warmup"):
            groups.setdefault((r.get("sweep"), r.get("load")), []).append(r)
    if len(groups) != len(points):
        res.problem("performance.serving", f"{len(points)} load points recorded but the rows hold {len(groups)}")
        return
    for (sweep, load), (point) in zip(groups, points):
        g = groups[(sweep, load)]
        where = f"performance.serving[{sweep} {load}]"
        res.same(f"{where}.sweep", point.get("sweep"), sweep)
        ok = [r for r in g if r.get("success")]
        res.same(f"{where}.num_requests", point.get("num_requests"), len(g))
        res.same(f"{where}.completed_count", point.get("completed_count"), len(ok))
        res.same(f"{where}.failed_count", point.get("failed_count"), len(g) - len(ok))
        if ok and all(r.get("output_tokens") is not None for r in ok):
            res.same(f"{where}.total_output_tokens", point.get("total_output_tokens"), sum(r["output_tokens"] for r in ok))
        for name in ("ttft", "e2el", "tpot"):
            vals = [r[f"{name}_ms"] for r in ok if is_num(r.get(f"{name}_ms"))]
            res.same(f"{where}.mean_{name}_ms", point.get(f"mean_{name}_ms"), mean(vals))
            res.same(f"{where}.median_{name}_ms", point.get(f"median_{name}_ms"), pct(vals, 50))
            res.same(f"{where}.p99_{name}_ms", point.get(f"p99_{name}_ms"), pct(vals, 99))
        itls = [x for r in ok for x in (r.get("itl_ms") or [])]
        res.same(f"{where}.mean_itl_ms", point.get("mean_itl_ms"), mean(itls))
        dur = point.get("duration_s")
        if is_num(dur) and dur > 0:
            res.same(f"{where}.request_throughput_req_per_s", point.get("request_throughput_req_per_s"), len(ok) / dur)
            if point.get("total_output_tokens") is not None and point.get("output_tok_per_s") is not None:
                res.same(f"{where}.output_tok_per_s", point.get("output_tok_per_s"), point["total_output_tokens"] / dur)

        slo = m.get("serving_slo")
        if isinstance(slo, dict) and is_num(dur) and dur > 0:
            res.same(f"{where}.good_count", point.get("good_count"), _good(ok, slo))
        _repeats(res, where, point, g)
    _agreement(res, m.get("serving_agreement"), points)
    _indistinguishable(res, m.get("serving_indistinguishable"), points)
    _capacity(res, m.get("capacity_slo"), sidecar_rows(run_dir, "performance", "capacity_requests", res))


# a client's share of TTFT below this is not a clock read's noise: the client saw a token before
# the server wrote it, or the server a request before it was sent (one monotonic clock)
CAUSALITY_SLACK_MS = 0.05


def _client(res: VerifyResult, points: list[dict[str, Any]], calibration: Any, rows: list[dict[str, Any]]) -> None:
    """Each point's `client_bound` from its own figures and limits; each calibration rate's counts
    and medians from its matched requests' rows, none of them faster than causality allows."""
    for pt in points:
        c = pt.get("client")
        if not isinstance(c, dict):
            continue
        lag, late = c.get("loop_lag_p99_ms"), c.get("send_lateness_p99_ms")
        bound = (is_num(lag) and lag > c.get("loop_lag_limit_ms", float("inf"))) or \
            (is_num(late) and late > c.get("send_lateness_limit_ms", float("inf")))
        res.same(f"performance.serving[{pt.get('sweep')} {_label(pt)}].client.client_bound", c.get("client_bound"), bool(bound))
    by_rate: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_rate[r.get("request_rate_label")].append(r)
    for cal in calibration or []:
        label = cal.get("request_rate_label")
        where = f"performance.loadgen_calibration[{label}]"
        own = [r["client_overhead_ms"] for r in by_rate.get(label, []) if is_num(r.get("client_overhead_ms"))]
        res.same(f"{where}.matched_count", cal.get("matched_count"), len(own))
        if own:
            res.same(f"{where}.client_overhead_median_ms", cal.get("client_overhead_median_ms"), float(np.median(own)))
            res.checks += 1
            if min(own) < -CAUSALITY_SLACK_MS:
                res.problem(where, f"a request's client share of TTFT is {min(own):.3f} ms: the client saw the first "
                                   "token before the server wrote it (clocks or matching are wrong)")


def _good(rows: list[dict[str, Any]], slo: dict[str, Any]) -> int:
    """Requests meeting every SLO (vLLM's goodput rule: a 1-token request's TPOT counts as 0)."""
    limits = {k: slo.get(f"{k}_ms") for k in ("ttft", "tpot", "e2el") if slo.get(f"{k}_ms") is not None}
    n = 0
    for r in rows:
        vals = {"ttft": r.get("ttft_ms"), "tpot": r.get("tpot_ms") if r.get("tpot_ms") is not None else 0.0,
                "e2el": r.get("e2el_ms")}
        n += all(is_num(vals[k]) and vals[k] <= v for k, v in limits.items())
    return n


def _indistinguishable(res: VerifyResult, close: Any, points: list[dict[str, Any]]) -> None:
    """Each 'not distinguishable' pair names two points whose recorded intervals do overlap."""
    for c in close or []:
        where = f"performance.serving_indistinguishable[{c.get('first_point')} / {c.get('second_point')}]"
        a, b = c.get("first_interval") or [], c.get("second_interval") or []
        res.checks += 1
        if len(a) != 2 or len(b) != 2 or not (a[0] <= b[1] and b[0] <= a[1]):
            res.problem(where, f"intervals {a} and {b} do not overlap")


def _capacity(res: VerifyResult, cap: Any, rows: list[dict[str, Any]]) -> None:
    """Every probe's counts and share from its own rows, `met` against the target share, and the
    answer: the highest passing load below the lowest failing one."""
    if not isinstance(cap, dict):
        return
    slo = {f"{k}": v for k, v in (cap.get("slo") or {}).items()}
    by_probe: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if not r.get("warmup"):
            by_probe[r.get("probe")].append(r)
    for i, pr in enumerate(cap.get("probes") or []):
        where = f"performance.capacity_slo.probes[{i}]"
        g = by_probe.get(i, [])
        ok = [r for r in g if r.get("success")]
        res.same(f"{where}.num_requests", pr.get("num_requests"), len(g))
        res.same(f"{where}.good_count", pr.get("good_count"), _good(ok, slo))
        if g:
            res.same(f"{where}.share_met", pr.get("share_met"), _good(ok, slo) / len(g))
        res.same(f"{where}.met", pr.get("met"), (pr.get("share_met") or 0) >= cap.get("target_share", 1))
    for kind in ("rate", "concurrency"):
        ans = cap.get(kind)
        if not isinstance(ans, dict):
            continue
        probes = [pr for pr in cap.get("probes") or [] if pr.get("search") == kind]
        failing = [pr["x"] for pr in probes if not pr.get("met")]
        passing = [pr["x"] for pr in probes if pr.get("met")]
        res.same(f"performance.capacity_slo.{kind}.lowest_failing", ans.get("lowest_failing"),
                 min(failing) if failing else None)
        below = [x for x in passing if not failing or x < min(failing)]
        res.same(f"performance.capacity_slo.{kind}.highest_passing", ans.get("highest_passing"),
                 max(below) if below else None)


def _repeats(res: VerifyResult, where: str, point: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Each repeat's figures from its own rows; the pooled duration is the repeats' durations summed."""
    reps = point.get("repeat_figures")
    if not isinstance(reps, list):
        return
    by_repeat: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_repeat[r.get("repeat")].append(r)
    res.same(f"{where}.repeat_figures (how many)", len(reps), len(by_repeat))
    res.same(f"{where}.duration_s", point.get("duration_s"), sum(rep.get("duration_s") or 0 for rep in reps))
    for rep in reps:
        k = rep.get("repeat")
        ok = [r for r in by_repeat.get(k, []) if r.get("success")]
        at = f"{where}.repeat_figures[{k}]"
        res.same(f"{at}.completed_count", rep.get("completed_count"), len(ok))
        for name in ("ttft", "tpot"):
            res.same(f"{at}.median_{name}_ms", rep.get(f"median_{name}_ms"),
                     pct([r[f"{name}_ms"] for r in ok if is_num(r.get(f"{name}_ms"))], 50))
        dur = rep.get("duration_s")
        if is_num(dur) and dur > 0 and ok and all(is_num(r.get("output_tokens")) for r in ok):
            res.same(f"{at}.output_tok_per_s", rep.get("output_tok_per_s"), sum(r["output_tokens"] for r in ok) / dur)


def _agreement(res: VerifyResult, agreement: Any, points: list[dict[str, Any]]) -> None:
    """The same-settings comparison from the points it names: values, difference, the widest spread
    over either point's repeats, and whether the difference is within it."""
    if not isinstance(agreement, list):
        return
    main = points[0]
    for a in agreement:
        key = a.get("compared_metric")
        where = f"performance.serving_agreement[{key} {a.get('second_point')}]"
        sweep, _, load = str(a.get("second_point")).partition(" ")
        twins = [pt for pt in points[1:] if pt.get("sweep") == sweep and _label(pt) == load]
        if len(twins) != 1:
            res.problem(where, f"names a point the serving record does not hold once ({len(twins)} found)")
            continue
        first, second = main.get(key), twins[0].get(key)
        res.same(f"{where}.first_value", a.get("first_value"), first)
        res.same(f"{where}.second_value", a.get("second_value"), second)
        if not (is_num(first) and is_num(second)):
            continue
        res.same(f"{where}.difference", a.get("difference"), abs(first - second))
        spreads = []
        for pt in (main, twins[0]):
            vals = [rep.get(key) for rep in pt.get("repeat_figures") or [] if is_num(rep.get(key))]
            if len(vals) >= 2:
                spreads.append(max(vals) - min(vals))
        spread = max(spreads) if spreads else None
        res.same(f"{where}.repeat_spread", a.get("repeat_spread"), spread)
        res.same(f"{where}.within_noise", a.get("within_noise"),
                 None if spread is None else abs(first - second) <= spread)


def _label(pt: dict[str, Any]) -> str:
    """The load label a point's rows carry ("rate=inf", "rate=inf conc=4"): loadgen.LoadSpec.label."""
    conc = pt.get("max_concurrency")
    return f"rate={pt.get('request_rate_label')}" + ("" if conc is None else f" conc={conc}")
