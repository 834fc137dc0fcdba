"""The features section's verify rule (`ascendeval verify`): the output guard's results against
their own numbers (the feature figures themselves are engine counters, recorded as read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rechecks import VerifyResult, guard_rule


def rule(res: VerifyResult, rec: dict[str, Any], run_dir: Path) -> None:
    guard_rule(res, "features", (rec.get("metrics") or {}).get("output_guard"))
