"""The record envelope: the only hand-off between notebooks.

`records/<section>.json` holds one envelope (see DESIGN.md); per-request / per-item raw data goes
to sidecars `records/<section>.<kind>.jsonl` so summaries can be recomputed. Writes are atomic
(temp file + rename) so a crash never leaves half a record. Values are checked for possibility
before they are written: a cosine of 1.0009 or a negative latency is a bug, never a result.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal

SCHEMA_VERSION = 2
# What changed since each older version, applied by `upgrade` when a record is read:
#   1 -> 2: the performance plan's model facts take the keys of models.model_card_facts
#           (num_kv_heads -> num_key_value_heads, checkpoint_dtype -> config_dtype,
#           num_parameters -> param_count, checkpoint_bytes -> weight_bytes, in plan.model and memory);
#           a feature's output comparison says what it compares with: speculative.<method>.identical_*
#           -> same_as_baseline_*, disaggregated_prefill.identical_rate -> same_as_single_rate.
_V1_MODEL_FACT_KEYS = {"num_kv_heads": "num_key_value_heads", "checkpoint_dtype": "config_dtype",
                       "num_parameters": "param_count", "checkpoint_bytes": "weight_bytes"}
Status = Literal["ok", "failed", "skipped"]
STATUSES = ("ok", "failed", "skipped")


class RecordError(ValueError):
    """A record holds an impossible value or a malformed envelope."""


@dataclass
class Record:
    section: str
    status: Status
    run_id: str
    model: dict[str, Any]
    target: dict[str, Any]
    reason: str | None = None
    reason_zh: str | None = None  # the reason in Chinese where the writer has one (the Chinese card shows it)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    env: dict[str, Any] = field(default_factory=dict)
    git_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, numpy scalars/arrays, Paths -> plain JSON types. NaN/inf become None (not measured)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar / array, torch tensor
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- validation

def validate_metrics(metrics: Any, where: str = "metrics") -> list[str]:
    """Return a list of problems (empty when every value is possible).

    What is possible for a key comes from its declaration in the metric catalog (catalog.py:
    kind -> range), never from the key's spelling; within each mapping the statistics of one
    quantity must be in order (min <= p50 <= ... <= max)."""
    from . import catalog

    problems: list[str] = []

    def walk(obj: Any, path: str, key: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}.{k}", str(k))
            problems.extend(catalog.percentile_order_problems(obj, path))
            return
        if isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]", key)
            return
        why = catalog.check_value(key, obj)
        if why:
            problems.append(f"{path}: {why}")

    walk(metrics, where, "")
    return problems


def validate_record(rec: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("schema_version", "section", "status", "run_id", "created_at", "model", "target", "metrics"):
        if key not in rec:
            problems.append(f"missing envelope key {key!r}")
    version = rec.get("schema_version")
    if "schema_version" in rec and version != SCHEMA_VERSION:
        problems.append(f"schema_version {version!r}: this ascendeval reads versions 1 to {SCHEMA_VERSION} "
                        f"({'upgrade ascendeval to read it' if isinstance(version, int) and version > SCHEMA_VERSION else 'not an ascendeval record version'})")
    if rec.get("status") not in STATUSES:
        problems.append(f"status {rec.get('status')!r} not in {STATUSES}")
    if rec.get("status") in ("failed", "skipped") and not rec.get("reason"):
        problems.append(f"status {rec.get('status')} needs a reason")
    problems += validate_metrics(rec.get("metrics", {}))
    problems += model_problems(rec.get("section"), rec.get("metrics", {}))
    return problems


def model_problems(section: Any, metrics: Any, where: str = "metrics") -> list[str]:
    """Where `metrics` does not fit the metrics model its section registers (an undeclared key, a
    wrong type). A section that registers no model (or a name outside the registry, as the tests'
    scratch sections) is held to the catalog's checks only."""
    from . import sections  # the registry imports the section packages, which import this module
    from .schema import metrics_problems

    model = sections.get(section).metrics if section in sections.NAMES else None
    return metrics_problems(model, metrics, where) if model is not None else []


# --------------------------------------------------------------------------- files


def records_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "records"


def record_path(run_dir: str | Path, section: str) -> Path:
    return records_dir(run_dir) / f"{section}.json"


def save(run_dir: str | Path, record: Record) -> Path:
    """Validate then atomically write `records/<section>.json`. Raises RecordError on impossible values."""
    data = to_jsonable(record.to_dict())
    problems = validate_record(data)
    if problems:
        raise RecordError(f"record {record.section!r} not saved: " + "; ".join(problems))
    path = record_path(run_dir, record.section)
    _atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def save_rows(run_dir: str | Path, section: str, kind: str, rows: Iterable[Any]) -> Path:
    """Write per-request / per-item raw rows to `records/<section>.<kind>.jsonl` (atomic)."""
    path = records_dir(run_dir) / f"{section}.{kind}.jsonl"
    text = "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in rows)
    _atomic_write(path, text)
    return path


def load_rows(run_dir: str | Path, section: str, kind: str) -> list[dict[str, Any]]:
    path = records_dir(run_dir) / f"{section}.{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def upgrade(rec: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema version in the current layout (a new dict; the file is not
    touched). A record from a newer ascendeval, or without a version, is returned as it is:
    `validate_record` then says which version it has and what this one reads."""
    version = rec.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version >= SCHEMA_VERSION or version < 1:
        return rec
    rec = json.loads(json.dumps(rec))  # a deep copy
    if version == 1 and rec.get("section") == "performance" and isinstance(rec.get("metrics"), dict):
        m = rec["metrics"]
        for block in (m.get("plan", {}).get("model") if isinstance(m.get("plan"), dict) else None, m.get("memory")):
            if isinstance(block, dict):
                for old, new in _V1_MODEL_FACT_KEYS.items():
                    if old in block:
                        block[new] = block.pop(old)
    if version == 1 and rec.get("section") == "features" and isinstance(rec.get("metrics"), dict):
        m = rec["metrics"]
        for block in (m.get("speculative") or {}).values():
            if isinstance(block, dict):
                for old, new in (("identical_outputs", "same_as_baseline_outputs"),
                                 ("identical_rate", "same_as_baseline_rate")):
                    if old in block:
                        block[new] = block.pop(old)
        if isinstance(m.get("disaggregated_prefill"), dict) and "identical_rate" in m["disaggregated_prefill"]:
            m["disaggregated_prefill"]["same_as_single_rate"] = m["disaggregated_prefill"].pop("identical_rate")
    rec["schema_version"] = SCHEMA_VERSION
    return rec


def load(run_dir: str | Path, section: str) -> dict[str, Any] | None:
    """The record of `section` in the current schema (an older one is upgraded as it is read)."""
    path = record_path(run_dir, section)
    if not path.exists():
        return None
    return upgrade(json.loads(path.read_text(encoding="utf-8")))


def load_all(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All section records of a run, keyed by section name (sidecars excluded)."""
    out: dict[str, dict[str, Any]] = {}
    rdir = records_dir(run_dir)
    if not rdir.is_dir():
        return out
    for p in sorted(rdir.glob("*.json")):
        if p.name.count(".") == 1:
            out[p.stem] = upgrade(json.loads(p.read_text(encoding="utf-8")))
    return out
