"""Percentile bootstrap intervals over rows, for metrics whose sampling error nobody states
otherwise (AP on a few hundred positives, an off-policy estimate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict[str, float]:
        """For JSON reports."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level}


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = 1_000,
                       level: float = 0.95, seed: int = 0) -> Interval:
    """``statistic(rows)`` on all ``n`` rows and its ``level`` percentile interval over
    ``resamples`` resamples of the rows with replacement (NaN resamples, e.g. without a positive,
    are left out; NaN bounds when none is left)."""
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(n)))
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(estimate, float("nan"), float("nan"), level)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), level)
