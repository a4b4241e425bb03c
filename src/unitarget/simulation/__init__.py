"""Online budget-split A/B simulation against the synthetic world's truth (issue 4).

``simulate(world, arms, config)`` replays one shared stream of ad opportunities to every arm (a
trained model, the oracle or random targeting), each with its share of every campaign's budget,
and returns i2s, eCPS, CTR and streams per popularity tier with intervals over markets; the
report of a result is written by ``reports.ab`` (``experiments.simulation`` runs both).
"""

from unitarget.simulation.result import ORACLE, RANDOM, SimulationResult
from unitarget.simulation.run import ArmSpec, parse_arm, simulate

__all__ = ["ORACLE", "RANDOM", "ArmSpec", "SimulationResult", "parse_arm", "simulate"]
