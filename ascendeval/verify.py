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
from pathlib import Path
from typing import Any

from . import records
from . import sections as sections_mod
from .rechecks import VerifyResult, is_num, sidecar_rows


def _check_sidecar_values(res: VerifyResult, run_dir: Path, skip: tuple[str, ...]) -> None:
    for path in sorted(records.records_dir(run_dir).glob("*.jsonl")):
        section, kind = path.name.split(".")[0], path.name.split(".")[1]
        if section in skip:
            continue
        for i, r in enumerate(sidecar_rows(run_dir, section, kind, res)):
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
        if is_num(s.get("wall_s")) and s["wall_s"] < 0:
            res.problem(f"run.json[{name}].wall_s", f"{s['wall_s']} is negative")
        if name in skip:
            continue
        rec = recs.get(name)
        if rec is None:
            res.problem(f"run.json[{name}]", "listed in run.json but records/{name}.json is missing")
        elif s.get("status") != rec.get("status"):
            res.problem(f"run.json[{name}].status", f"{s.get('status')!r} but the record says {rec.get('status')!r}")
    shared = man.get("shared_server")
    if isinstance(shared, dict) and is_num(shared.get("start_wall_s")) and shared["start_wall_s"] < 0:
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
            rec = records.upgrade(json.loads(path.read_text(encoding="utf-8")))  # an older schema is read as the current one
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
            if isinstance(st, dict) and is_num(st.get("wall_s")) and st["wall_s"] < 0:
                res.problem(path.name, f"engine start {st.get('label')} has negative wall_s")
        for a in rec.get("artifacts") or []:
            res.checks += 1
            if not (run_dir / a).exists() and not Path(a).is_absolute():
                res.problem(path.name, f"artifact {a} is listed but missing")
        rule = sections_mod.get(path.stem).verify if path.stem in sections_mod.NAMES else None
        if rule is not None and rec.get("status") in ("ok", "failed"):
            try:
                rule(res, rec, run_dir)
            except (KeyError, TypeError, ValueError) as exc:
                res.problem(f"{path.stem} sidecars", f"malformed rows: {type(exc).__name__}: {exc}")
    _check_sidecar_values(res, run_dir, skip_sections)
    _check_manifest(res, run_dir, recs, skip_sections)
    return res

