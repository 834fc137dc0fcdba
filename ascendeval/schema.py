"""Pydantic base classes shared by the params schema (config.py, each section's config module) and
the record metrics models (each section's metrics module). A leaf module: it imports nothing of
ascendeval, so a section package can declare its models without importing the run config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A params block: unknown keys are an error, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
