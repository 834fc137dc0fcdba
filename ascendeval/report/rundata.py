"""One run directory as the report reads it: records, run.json, the params copy, sidecar rows and
the model facts recorded by the run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import records

# the registry is read at call time only: the section packages import these report modules
from .. import sections as sections_mod
from .cells import get


@dataclass
class RunData:
    """Everything the report reads from one run directory."""

    run_dir: Path
    records: dict[str, dict[str, Any]]
    manifest: dict[str, Any] | None
    params_text: str | None

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def rec(self, section: str) -> dict[str, Any] | None:
        return self.records.get(section)

    def metrics(self, section: str) -> Any:
        """The section's metrics as its registered model (attribute access, types checked), or
        None when there is no record. A record that does not fit raises pydantic's ValidationError
        (`ascendeval verify` names the key)."""
        rec = self.records.get(section)
        if rec is None:
            return None
        model = sections_mod.get(section).metrics
        return model.model_validate(rec.get("metrics") or {}) if model is not None else None

    def any_record(self) -> dict[str, Any]:
        for s in sections_mod.NAMES:
            if s in self.records:
                return self.records[s]
        return {}

    def params(self) -> dict[str, Any]:
        import yaml

        try:
            return yaml.safe_load(self.params_text or "") or {}
        except Exception:  # noqa: BLE001 - a broken copy only costs the deploy commands
            return {}

    def rows(self, section: str, kind: str) -> list[dict[str, Any]]:
        try:
            return records.load_rows(self.run_dir, section, kind)
        except (OSError, json.JSONDecodeError):
            return []


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir).resolve()
    manifest = None
    mpath = run_dir / "run.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            manifest = None
    ppath = run_dir / "params.yaml"
    return RunData(run_dir, records.load_all(run_dir), manifest,
                   ppath.read_text(encoding="utf-8") if ppath.is_file() else None)


def find_runs(outputs: str | Path) -> list[Path]:
    """Run directories under outputs/<model>/<run_id>/ (those with a records/ folder)."""
    outputs = Path(outputs)
    return sorted(p.parent for p in outputs.glob("*/*/records") if p.is_dir())


def facts_from_model_dir(model_dir: str | Path) -> dict[str, Any]:
    """Model-card facts from the model's own config.json and weight headers (one source of truth:
    `models.model_card_facts`)."""
    from .. import models

    return dict(models.model_card_facts(Path(model_dir)))


def recorded_model_facts(data: RunData) -> tuple[dict[str, Any] | None, str | None]:
    """The model facts and the section whose record holds them (smoke first, then report)."""
    for section in ("smoke", "report", "performance"):
        m = get(data.rec(section), "metrics.model")
        if isinstance(m, dict) and m.get("architecture"):
            return m, section
    return None, None

