"""Pareto fronts over per-format AP (higher is better on every coordinate).

An arm is *dominated* when another arm is at least as good on every format and better on one (on
mean AP over seeds). The front is the set of arms nobody dominates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a ≥ b on every coordinate and > on at least one (higher is better)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a >= b) and np.any(a > b))


def pareto_front(points: Mapping[str, Sequence[float]]) -> list[str]:
    """Names of the points no other point dominates, in input order (NaN points are left out)."""
    finite = {k: v for k, v in points.items() if np.all(np.isfinite(np.asarray(v, dtype=float)))}
    return [k for k, v in finite.items() if not any(dominates(w, v) for j, w in finite.items() if j != k)]
