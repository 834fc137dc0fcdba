"""The `sections.report` block of the params file (read by the report section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...schema import Strict


class ReportConfig(Strict):
    enabled: bool = True
    language: Literal["en", "zh"] = Field("en", description="language of the model card and index: en or zh")
    title: str | None = Field(None, description="card title; default '<model> on <device>: evaluation report'")
    verify: bool = Field(True, description="run `ascendeval verify` on the records before writing the card")
    index: bool = Field(True, description="regenerate outputs/index.{html,md} over every run")
