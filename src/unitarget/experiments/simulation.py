"""Budget-split A/B simulations run and written: ``unitarget simulate`` and the reproduction's
Table 2 test."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from unitarget.config import SimulateConfig
from unitarget.reports.ab import write_simulation
from unitarget.reports.table2 import AB_DIR, PAPER_TIERS
from unitarget.simulation import ORACLE, RANDOM, ArmSpec, SimulationResult, simulate
from unitarget.simulation.run import find_world
from unitarget.synth import World


def run_simulation(
    world_dir: Path, arms: Sequence[ArmSpec], out: Path, config: SimulateConfig,
    *, log: Callable[[str], None] = lambda _: None,
) -> SimulationResult:
    """Load the world written by ``unitarget synth``, simulate, write AB.md, CSVs and the chart."""
    result = simulate(World.load(find_world(world_dir)), arms, config, log=log)
    write_simulation(result, Path(out))
    return result


def run_paper_ab(
    out: Path, control: Path, treatment: Path, config: SimulateConfig, *, log: Callable[[str], None] = print
) -> SimulationResult:
    """The reproduction's A/B test: control, treatment, oracle and random arms on ``out/data/world``,
    written to ``out/ab/`` with the paper's tier points on the chart."""
    arms = [ArmSpec(control.name, control), ArmSpec(treatment.name, treatment),
            ArmSpec(ORACLE, ORACLE), ArmSpec(RANDOM, RANDOM)]
    result = simulate(World.load(find_world(out / "data")), arms, config, log=log)
    write_simulation(result, out / AB_DIR, paper_tiers=PAPER_TIERS, paper_arm=treatment.name)
    return result
