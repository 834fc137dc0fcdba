"""The card's layout in jinja2 templates (report/templates/*.md.j2); their words come from
data/card_text.yaml through `t(key, **kw)`, so one template serves both languages."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .. import paths
from .text import L

TEMPLATES_DIR = paths.PACKAGE_DIR / "report" / "templates"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # Markdown, not HTML: no autoescape; StrictUndefined so a missing value fails the render loudly
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=False,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                              trim_blocks=True, lstrip_blocks=True)


def render(name: str, lang: str, **values: Any) -> str:
    """The template `name` rendered in `lang`, with `t(key, **kw)` giving the card text."""
    return _env().get_template(name).render(t=lambda key, **kw: L(lang, key, **kw), **values).strip()
