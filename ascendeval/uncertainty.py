"""Confidence intervals for load-point figures, and when two points cannot be told apart.

A serving point measured `repeats` times has two sources of noise: request to request within a
run, and run to run (a slow phase of the host moves a whole repeat). A request-level median
(TTFT, TPOT, ITL, E2EL) gets a two-stage (cluster) bootstrap: resample the repeats, then the
requests within each resampled repeat, take the pooled median; the interval is the percentile
range of those medians. With one repeat only the request-to-request part is measured, and the
record says so (`ci_method`). A run-level figure (output tok/s: one value per repeat) gets a
Student-t interval over its repeats, None with a single repeat.

Two points are "not distinguishable" on a figure when their intervals overlap: the difference
between them is within what this run can resolve.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 1000

# Student-t 0.975 quantiles for 1..30 degrees of freedom (a two-sided 95 % interval); beyond 30
# the normal 1.96 differs by under 2 %. Values from any t table (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def median_ci(groups: Sequence[Sequence[float]], level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the pooled median under a two-stage bootstrap over `groups` (one
    list of values per repeat). None when there are fewer than two values in all."""
    groups = [np.asarray([v for v in g if v is not None and math.isfinite(v)], dtype=float) for g in groups]
    groups = [g for g in groups if len(g)]
    if sum(len(g) for g in groups) < 2:
        return None
    rng = np.random.default_rng(seed)
    meds = np.empty(resamples)
    for b in range(resamples):
        picked = rng.integers(0, len(groups), size=len(groups)) if len(groups) > 1 else [0]
        pooled = np.concatenate([groups[i][rng.integers(0, len(groups[i]), size=len(groups[i]))] for i in picked])
        meds[b] = np.median(pooled)
    alpha = (1 - level) / 2
    return float(np.quantile(meds, alpha)), float(np.quantile(meds, 1 - alpha))


def mean_ci(values: Sequence[float], floor: float | None = 0.0) -> tuple[float, float] | None:
    """Student-t 95 % interval of the mean of `values` (one per repeat); None with fewer than two.
    The low end is cut at `floor` (a rate cannot be negative; a wide t interval over two or three
    repeats reaches below 0)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if len(v) < 2:
        return None
    mean = sum(v) / len(v)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    t = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    half = t * sd / math.sqrt(len(v))
    lo = mean - half if floor is None else max(floor, mean - half)
    return lo, mean + half


def overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Whether two intervals overlap (the points are not distinguishable); None if either is missing."""
    if a is None or b is None:
        return None
    return a[0] <= b[1] and b[0] <= a[1]
