"""`ascendeval verify RUN_DIR`: are the published figures what the raw data says?

1. Every record is re-validated (envelope, impossible values: cosine outside [-1, 1], negative
   times, p50 > p99, rates outside [0, 1]) — also records written by hand or by an older version.
2. Every sidecar row (`records/<section>.<kind>.jsonl`) is checked the same way, plus per-row
   consistency: TTFT <= E2E latency, TPOT = (E2EL - TTFT) / (tokens - 1), token counts that agree
   with the token ids / the chunks the server reported / max_tokens.
3. Summary metrics are recomputed from the sidecars with the same definitions the sections use
   (`metrics.py`, `precision_metrics.py`) and compared with the record.
4. `run.json` must agree with the records it summarises.

Any mismatch is a problem; the command exits 1 when there is one. Tampering with a number in a
record or a row of a sidecar is exactly what this catches.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from . import records
from . import sections as sections_mod

REL_TOL = 1e-6
ABS_TOL = 1e-9


@dataclass
class VerifyResult:
    run_dir: Path
    checks: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def same(self, where: str, recorded: Any, recomputed: Any, rel: float = REL_TOL, abs_: float = ABS_TOL) -> None:
        """Compare a recorded value with the one recomputed from raw rows."""
        self.checks += 1
        if recorded is None and recomputed is None:
            return
        if isinstance(recomputed, bool) or isinstance(recorded, bool) or not (
                isinstance(recorded, (int, float)) and isinstance(recomputed, (int, float))):
            if recorded != recomputed:
                self.problem(where, f"recorded {recorded!r} but the raw rows give {recomputed!r}")
            return
        if not math.isclose(float(recorded), float(recomputed), rel_tol=rel, abs_tol=abs_):
            self.problem(where, f"recorded {recorded!r} but the raw rows give {recomputed!r}")

    def summary(self) -> str:
        head = f"verify {self.run_dir}: {self.checks} checks, {len(self.problems)} problem(s)"
        return "\n".join([head] + [f"  - {p}" for p in self.problems]) + ("" if self.problems else "\nOK")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mean(vals: Iterable[float]) -> float | None:
    v = [float(x) for x in vals]
    return float(np.mean(v)) if v else None


def _pct(vals: list[float], p: float) -> float | None:
    return float(np.percentile(np.asarray(vals, dtype=float), p)) if vals else None


# =========================================================================== per-section rules
# Each rule gets (result, record, run_dir) and recomputes what it can; a rule for a sidecar that
# does not exist checks nothing (the section may have skipped that step).


def _rows(run_dir: Path, section: str, kind: str, res: VerifyResult) -> list[dict[str, Any]]:
    path = records.records_dir(run_dir) / f"{section}.{kind}.jsonl"
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            res.problem(f"{path.name}:{i}", f"not valid JSON ({exc.msg})")
    return out


def _check_generation_row(res: VerifyResult, where: str, r: dict[str, Any], max_tokens: int | None) -> None:
    """Token counts vs token ids and max_tokens; tok/s vs tokens and latency."""
    n, ids = r.get("output_tokens"), r.get("token_ids")
    res.checks += 1
    if isinstance(ids, list) and ids and _num(n) and n != len(ids):
        res.problem(where, f"output_tokens {n} but {len(ids)} token ids")
    if max_tokens is not None and _num(n) and n > max_tokens:
        res.problem(where, f"output_tokens {n} > max_tokens {max_tokens}")
    lat, tps = r.get("latency_s"), r.get("tok_per_s")
    if _num(n) and _num(lat) and lat > 0 and _num(tps):
        res.same(f"{where}.tok_per_s", tps, n / lat, rel=1e-6)


def rule_smoke(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    max_tokens = records_param(rec, "smoke", "max_tokens")
    rows = _rows(run_dir, "smoke", "prompts", res)
    for i, r in enumerate(rows):
        _check_generation_row(res, f"smoke.prompts.jsonl[{i}]", r, max_tokens)
    s = m.get("prompts")
    if rows and isinstance(s, dict):
        lat = [r["latency_s"] for r in rows]
        res.same("smoke.prompts.count", s.get("count"), len(rows))
        res.same("smoke.prompts.mean_latency_s", s.get("mean_latency_s"), sum(lat) / len(lat))
        res.same("smoke.prompts.max_latency_s", s.get("max_latency_s"), max(lat))
        res.same("smoke.prompts.min_latency_s", s.get("min_latency_s"), min(lat))
        res.same("smoke.prompts.empty_outputs", s.get("empty_outputs"),
                 sum(1 for r in rows if not str(r.get("output", "")).strip()))
    served = _rows(run_dir, "smoke", "served", res)
    for i, r in enumerate(served):
        _check_generation_row(res, f"smoke.served.jsonl[{i}]", r, max_tokens)
    s = m.get("served")
    if served and isinstance(s, dict):
        res.same("smoke.served.requests", s.get("requests"), len(served))
        res.same("smoke.served.mean_latency_s", s.get("mean_latency_s"), _mean(r["latency_s"] for r in served))
        ttfts = [r["ttft_ms"] for r in served if r.get("ttft_ms") is not None]
        res.same("smoke.served.mean_ttft_ms", s.get("mean_ttft_ms"), _mean(ttfts))
        cmp_ = [bool(r["same_as_offline"]) for r in served if "same_as_offline" in r]
        res.same("smoke.served.same_as_offline_rate", s.get("same_as_offline_rate"),
                 (sum(cmp_) / len(cmp_)) if cmp_ else None)


def records_param(rec: dict[str, Any], section: str, key: str) -> Any:
    return ((rec.get("params") or {}).get(section) or {}).get(key)


def rule_performance(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    rows = _rows(run_dir, "performance", "latency", res)
    lat_rows = [r for r in rows if r.get("kind") == "latency"]
    s = m.get("latency")
    if lat_rows and isinstance(s, dict):
        from .metrics import latency_summary

        recomputed = latency_summary([r["latency_s"] for r in lat_rows])
        for k, v in recomputed.items():
            if k in s:
                res.same(f"performance.latency.{k}", s[k], v)
        if _num(s.get("batch_size")) and _num(s.get("output_len")) and _num(s.get("avg_latency_s")):
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


def _serving(res: VerifyResult, m: dict[str, Any], run_dir: Path) -> None:
    rows = _rows(run_dir, "performance", "requests", res)
    for i, r in enumerate(rows):
        where = f"performance.requests.jsonl[{i}]"
        res.checks += 1
        if not r.get("success"):
            continue
        ttft, e2el, n = r.get("ttft_ms"), r.get("e2el_ms"), r.get("output_tokens")
        if _num(ttft) and _num(e2el) and ttft > e2el * (1 + 1e-9) + 1e-9:
            res.problem(where, f"ttft_ms {ttft} > e2el_ms {e2el}")
        if _num(n) and _num(r.get("max_tokens")) and n > r["max_tokens"]:
            res.problem(where, f"output_tokens {n} > max_tokens {r['max_tokens']}")
        ct = r.get("chunk_tokens")
        if isinstance(ct, list) and _num(n) and sum(ct) != n:
            res.problem(where, f"chunk_tokens sum to {sum(ct)} but usage says output_tokens {n}")
        if r.get("usage_reported") and n is None:
            res.problem(where, "usage reported but output_tokens is missing")
        if _num(ttft) and _num(e2el) and _num(n) and n > 1:
            res.same(f"{where}.tpot_ms", r.get("tpot_ms"), (e2el - ttft) / (n - 1))
        itl = r.get("itl_ms")
        if isinstance(itl, list) and _num(r.get("num_chunks")) and r["num_chunks"] > 0 and len(itl) != r["num_chunks"] - 1:
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
            vals = [r[f"{name}_ms"] for r in ok if _num(r.get(f"{name}_ms"))]
            res.same(f"{where}.mean_{name}_ms", point.get(f"mean_{name}_ms"), _mean(vals))
            res.same(f"{where}.median_{name}_ms", point.get(f"median_{name}_ms"), _pct(vals, 50))
            res.same(f"{where}.p99_{name}_ms", point.get(f"p99_{name}_ms"), _pct(vals, 99))
        itls = [x for r in ok for x in (r.get("itl_ms") or [])]
        res.same(f"{where}.mean_itl_ms", point.get("mean_itl_ms"), _mean(itls))
        dur = point.get("duration_s")
        if _num(dur) and dur > 0:
            res.same(f"{where}.request_throughput_req_per_s", point.get("request_throughput_req_per_s"), len(ok) / dur)
            if point.get("total_output_tokens") is not None and point.get("output_tok_per_s") is not None:
                res.same(f"{where}.output_tok_per_s", point.get("output_tok_per_s"), point["total_output_tokens"] / dur)


def rule_precision(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    tf = m.get("teacher_forced")
    rows = _rows(run_dir, "precision", "positions", res)
    if rows and isinstance(tf, dict) and tf.get("scope"):
        from .precision_metrics import summarize_positions

        recomputed = summarize_positions(rows, tf["scope"])
        for k, v in recomputed.items():
            if k in tf and k != "scope":
                res.same(f"precision.teacher_forced.{k}", tf[k], v)
    checks = (m.get("verdict") or {}).get("checks") if isinstance(m.get("verdict"), dict) else None
    from .precision_metrics import check as verdict_check

    for c in checks or []:
        if not isinstance(c, dict) or c.get("op") not in (">=", "<=", "=="):
            res.problem(f"precision.verdict[{c.get('metric') if isinstance(c, dict) else c}]", "unknown comparison")
            continue
        got, thr = c.get("measured"), c.get("threshold")
        # the section's own rule recomputed: None when either side was not measured
        want = verdict_check(str(c.get("metric")), got if _num(got) else None, c["op"], thr).passed if _num(thr) else None
        res.same(f"precision.verdict[{c.get('metric')}].passed", c.get("passed"), want)
        metric = c.get("metric")
        if isinstance(tf, dict) and metric in tf and _num(got):
            res.same(f"precision.verdict[{metric}].measured", got, tf[metric])
    if checks:
        # the section's own rule: false if any check failed, true if all measured ones passed
        states = [c.get("passed") for c in checks if isinstance(c, dict)]
        want_overall = False if False in states else (True if True in states else None)
        res.same("precision.verdict.passed", m["verdict"].get("passed"), want_overall)


def rule_quality(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    m = rec.get("metrics", {})
    rows = _rows(run_dir, "quality", "suites", res)
    s = m.get("suites")
    if rows and isinstance(s, dict):
        res.same("quality.suites.num_items", s.get("num_items"), len(rows))
        by: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            by[r["suite"]].append(bool(r.get("passed")))
        for suite, vals in by.items():
            res.same(f"quality.suites.{suite}_pass_rate", s.get(f"{suite}_pass_rate"), sum(vals) / len(vals))
        res.same("quality.suites.overall_pass_rate", s.get("overall_pass_rate"),
                 sum(bool(r.get("passed")) for r in rows) / len(rows))
    items = _rows(run_dir, "quality", "items", res)
    bench = m.get("benchmarks")
    if items and isinstance(bench, dict):
        by2: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for r in items:
            by2[(r.get("benchmark"), r.get("method"))].append(bool(r.get("correct")))
        for (name, method), vals in by2.items():
            score = get_path(bench, [name, method])
            if isinstance(score, dict):
                res.same(f"quality.benchmarks.{name}.{method}.num_items", score.get("num_items"), len(vals))
                res.same(f"quality.benchmarks.{name}.{method}.accuracy", score.get("accuracy"), sum(vals) / len(vals))
            else:
                res.problem(f"quality.benchmarks.{name}.{method}", "rows exist but the record has no score")


def get_path(d: Any, keys: list[Any]) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


# each section's rule, as the section registry names it
RULES: dict[str, Callable[[VerifyResult, dict[str, Any], Path], None]] = {
    s.name: globals()[s.verify_rule] for s in sections_mod.SECTIONS if s.verify_rule}


# =========================================================================== the run


def _check_sidecar_values(res: VerifyResult, run_dir: Path, skip: tuple[str, ...]) -> None:
    for path in sorted(records.records_dir(run_dir).glob("*.jsonl")):
        section, kind = path.name.split(".")[0], path.name.split(".")[1]
        if section in skip:
            continue
        for i, r in enumerate(_rows(run_dir, section, kind, res)):
            res.checks += 1
            for p in records.validate_metrics(r, f"{path.name}[{i}]"):
                res.problems.append(p)


def _check_manifest(res: VerifyResult, run_dir: Path, recs: dict[str, dict[str, Any]], skip: tuple[str, ...]) -> None:
    path = run_dir / "run.json"
    if not path.is_file():
        return
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        res.problem("run.json", f"not valid JSON ({exc.msg})")
        return
    for s in man.get("sections", []):
        res.checks += 1
        name = s.get("section")
        if _num(s.get("wall_s")) and s["wall_s"] < 0:
            res.problem(f"run.json[{name}].wall_s", f"{s['wall_s']} is negative")
        if name in skip:
            continue
        rec = recs.get(name)
        if rec is None:
            res.problem(f"run.json[{name}]", "listed in run.json but records/{name}.json is missing")
        elif s.get("status") != rec.get("status"):
            res.problem(f"run.json[{name}].status", f"{s.get('status')!r} but the record says {rec.get('status')!r}")
    shared = man.get("shared_server")
    if isinstance(shared, dict) and _num(shared.get("start_wall_s")) and shared["start_wall_s"] < 0:
        res.problem("run.json.shared_server.start_wall_s", "negative")


def verify_run(run_dir: str | Path, skip_sections: tuple[str, ...] = ()) -> VerifyResult:
    """Check every record and sidecar of a run; returns the checks made and the problems found."""
    run_dir = Path(run_dir).resolve()
    res = VerifyResult(run_dir)
    rdir = records.records_dir(run_dir)
    if not rdir.is_dir():
        res.problem(str(run_dir), "no records/ directory: not a run directory")
        return res
    recs: dict[str, dict[str, Any]] = {}
    for path in sorted(rdir.glob("*.json")):
        if path.name.count(".") != 1 or path.stem in skip_sections:
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            res.problem(path.name, f"not valid JSON ({exc.msg})")
            continue
        recs[path.stem] = rec
        res.checks += 1
        for p in records.validate_record(rec):
            res.problem(path.name, p)
        if rec.get("section") != path.stem:
            res.problem(path.name, f"section {rec.get('section')!r} does not match the file name")
        if rec.get("run_id") != run_dir.name:
            res.problem(path.name, f"run_id {rec.get('run_id')!r} is not this run ({run_dir.name})")
        steps = (rec.get("metrics") or {}).get("steps") or {}
        failed = [k for k, v in steps.items() if isinstance(v, dict) and v.get("status") == "failed"]
        if rec.get("status") == "ok" and failed:
            res.problem(path.name, f"status ok although step(s) {', '.join(failed)} failed")
        for st in (rec.get("metrics") or {}).get("engine_starts") or []:
            if isinstance(st, dict) and _num(st.get("wall_s")) and st["wall_s"] < 0:
                res.problem(path.name, f"engine start {st.get('label')} has negative wall_s")
        for a in rec.get("artifacts") or []:
            res.checks += 1
            if not (run_dir / a).exists() and not Path(a).is_absolute():
                res.problem(path.name, f"artifact {a} is listed but missing")
        rule = RULES.get(path.stem)
        if rule is not None and rec.get("status") in ("ok", "failed"):
            try:
                rule(res, rec, run_dir)
            except (KeyError, TypeError, ValueError) as exc:
                res.problem(f"{path.stem} sidecars", f"malformed rows: {type(exc).__name__}: {exc}")
    _check_sidecar_values(res, run_dir, skip_sections)
    _check_manifest(res, run_dir, recs, skip_sections)
    return res
