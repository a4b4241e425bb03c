"""What a simulation returns: counts per arm, market and segment and the comparison with the
control. Its own module so that what reads a result (reports.ab, reports.table2) needs nothing of
what produces one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unitarget.config import SimulateConfig
from unitarget.evaluation.segments import SEGMENTS
from unitarget.simulation.metrics import METRICS, Comparison
from unitarget.simulation.policy import Served

#: The reference arms: the world's true probabilities, and random targeting.
ORACLE, RANDOM = "oracle", "random"


@dataclass
class SimulationResult:
    """Counts per (arm, market, segment), the comparison with the control, and what was simulated."""

    config: SimulateConfig
    arms: tuple[str, ...]
    control: str
    cube: np.ndarray  # (A, M, S, Q) counts, metrics.COUNTS order
    comparison: Comparison
    summary: dict[str, Any]
    served: dict[str, Served] = field(default_factory=dict, repr=False)

    def get(self, what: str, arm: str, segment: str, metric: str) -> float:
        """One figure: ``what`` is value, change, ci_low, ci_high or p_value."""
        table = getattr(self.comparison, what)
        return float(table[self.arms.index(arm), SEGMENTS.index(segment), METRICS.index(metric)])
