"""The `sections.environment` block of the params file (read by the environment section; strict like every
params block: an unknown key is a one-line error)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ...schema import Strict


class EnvironmentConfig(Strict):
    enabled: bool = True
    probes: bool = Field(True, description="run the memory-bandwidth and matmul probes (roofline inputs)")
    bandwidth_mib: int | None = Field(
        None, gt=0, description="buffer of the bandwidth probe, well above the last-level cache; "
        "default per device: 128 on CPU, 2048 on NPU/GPU"
    )
    matmul_sizes: list[int] | None = Field(
        None,
        description="square matmul sizes, run smallest first; larger ones are skipped when they do not fit the budget; "
        "default per device: 256-2048 on CPU, 1024-16384 on NPU/GPU",
    )
    matmul_dtypes: list[Literal["float32", "bfloat16", "float16"]] = Field(default_factory=lambda: ["float32", "bfloat16"])
    matmul_budget_s: float = Field(12.0, gt=0, description="wall-time budget of the matmul probe, shared by the dtypes")
    probe_repeats: int = Field(5, ge=1, description="timed repeats per probe (median reported)")

    @field_validator("matmul_sizes")
    @classmethod
    def _sizes_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) <= 0):
            raise ValueError("must be a non-empty list of positive integers, e.g. [256, 512, 1024]")
        return v
