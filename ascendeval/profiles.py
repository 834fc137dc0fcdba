"""Run profiles: `profile: quick | standard | full` sets the counts of every section in one word.

A profile is a partial `sections:` block (ascendeval/data/profiles.yaml) laid UNDER the params
file's own: a key the params set explicitly always wins, a key neither sets keeps its default. A
list of blocks (quality's benchmarks) takes the profile's `each:` keys into every item that does
not set them itself. `apply` returns the merged block and the dotted keys the profile decided,
which the records keep so the card can say what the profile changed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml

from . import paths

PROFILE_NAMES = ("quick", "standard", "full")
DEFAULT_PROFILE = "standard"
PROFILES_FILE = paths.PACKAGE_DIR / "data" / "profiles.yaml"


@lru_cache(maxsize=1)
def _profiles() -> dict[str, Any]:
    data = yaml.safe_load(PROFILES_FILE.read_text(encoding="utf-8"))
    missing = set(PROFILE_NAMES) - set(data)
    if missing:
        raise RuntimeError(f"{PROFILES_FILE}: profiles missing: {', '.join(sorted(missing))}")
    return data


def describe(name: str, lang: str = "en") -> str:
    """The profile's one-line description, for the card."""
    return _profiles()[name][f"description_{lang}" if lang == "zh" else "description"]


def overlay(name: str) -> dict[str, Any]:
    return _profiles()[name].get("sections") or {}


_UNSET = object()  # a key the params file does not mention (an explicit null is a setting)


def _merge(over: Any, user: Any, default: Any, path: str, applied: list[str]) -> Any:
    if isinstance(over, dict) and set(over) == {"each"}:
        # a list of blocks: the profile's keys go into every item that leaves them unset
        if user is _UNSET:  # the default list: the profile's keys replace the defaults' values
            if not isinstance(default, list):
                return user
            applied.extend(f"{path}[*].{k}" for k in over["each"])
            return [{**it, **over["each"]} for it in default]
        if not isinstance(user, list):
            return user
        items = user
        return [_merge(over["each"], it, None, f"{path}[{i}]", applied) if isinstance(it, dict) else it
                for i, it in enumerate(items)]
    if isinstance(over, dict):
        if user is not _UNSET and not isinstance(user, dict):
            return user  # not a mapping (or an explicit null): validation judges the params' value
        base = {} if user is _UNSET else dict(user)
        for key, value in over.items():
            sub_default = default.get(key) if isinstance(default, dict) else None
            base[key] = _merge(value, base.get(key, _UNSET), sub_default, f"{path}.{key}" if path else key, applied)
        return base
    if user is not _UNSET:
        return user  # set in the params (null included): the params win
    applied.append(path)
    return over


def apply(name: str, sections: Any, defaults: dict[str, Any]) -> tuple[Any, list[str]]:
    """(the params' `sections` with the profile under it, the dotted keys the profile decided)."""
    applied: list[str] = []
    if sections is not None and not isinstance(sections, dict):
        return sections, applied
    merged = _merge(overlay(name), sections if sections is not None else {}, defaults, "", applied)
    return merged, sorted(applied)
