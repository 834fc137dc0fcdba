"""The section registry: each section of the workbook is one package here, registering one
`Section` (base.py) in its `__init__.py`; this module collects them in run order.

`config` (the params blocks), `runner` (which notebook runs it, whether it may use the run's
shared server), `report` (card heading, card renderer, verdict, index columns) and `verify` (the
rule that recomputes its summaries) all loop over `SECTIONS`; adding a section means adding its
package, nothing else. Sections run in the order of their notebooks' numbers (00_environment first).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Section


def _discover() -> tuple[Section, ...]:
    """Every sub-package's `SECTION`, in notebook order."""
    found = [importlib.import_module(f"{__name__}.{m.name}").SECTION
             for m in pkgutil.iter_modules(__path__) if m.ispkg]
    return tuple(sorted(found, key=lambda s: s.notebook))


SECTIONS: tuple[Section, ...] = _discover()

NAMES: tuple[str, ...] = tuple(s.name for s in SECTIONS)
JUDGED: tuple[str, ...] = tuple(s.name for s in SECTIONS if s.has_verdict)
_BY_NAME = {s.name: s for s in SECTIONS}


def get(name: str) -> Section:
    """The section called `name`; KeyError names the allowed ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown section {name!r}; allowed: {', '.join(NAMES)}") from None


def index_metrics() -> list[tuple[str, str, str]]:
    """(metric key, section, attribute path in its metrics model) of every index column, in
    section order."""
    return [(key, s.name, path) for s in SECTIONS for key, path in s.index_metrics]
