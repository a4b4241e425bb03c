"""The budget-split A/B simulation as one call: a world and some arms in, metrics per arm out.

    market = build_marketplace(world, config)        # shared by every arm (market.py)
    for each arm:
        value = scorer.values(world, market)         # (N, K) one value per candidate (scorers.py)
        rank  = value / price                        # value per cost (not for the random arm)
        served = serve(market, rank)                 # pacing + allocation (policy.py)
        outcomes = draw_outcomes(...)                # common random numbers (outcomes.py)
    compare(cube, control)                           # per segment, CIs and p-values (metrics.py)

An arm is the name of a trained run directory, or ``oracle`` (the world's true probabilities) or
``random``. Adding or removing an arm never changes what another arm gets: the marketplace and
each scorer have their own random streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unitarget.config import SimulateConfig
from unitarget.errors import UnitargetError
from unitarget.pipeline import TrainedModel, load_model
from unitarget.simulation.market import Marketplace, build_marketplace
from unitarget.simulation.metrics import COUNTS, compare, count_cube
from unitarget.simulation.outcomes import Outcomes, draw_outcomes
from unitarget.simulation.policy import Served, serve
from unitarget.simulation.result import ORACLE, RANDOM, SimulationResult
from unitarget.simulation.scorers import ModelScorer, OracleScorer, RandomScorer, Scorer
from unitarget.synth import World

@dataclass(frozen=True)
class ArmSpec:
    """An arm: its name in the report and what targets for it (a run, a model, oracle, random)."""

    name: str
    source: str | Path | TrainedModel


def parse_arm(text: str) -> ArmSpec:
    """``NAME=RUN`` (a run directory, or ``oracle`` / ``random``), or just ``oracle`` / ``random``."""
    name, sep, source = text.partition("=")
    name, source = name.strip(), source.strip()
    if not sep:
        if name not in (ORACLE, RANDOM):
            raise UnitargetError(f"--arm {text!r}: write NAME=RUN (a trained run directory), oracle "
                                 "or random")
        return ArmSpec(name, name)
    if not name or not source:
        raise UnitargetError(f"--arm {text!r}: both NAME and RUN are needed in NAME=RUN")
    return ArmSpec(name, source if source in (ORACLE, RANDOM) else Path(source))


def simulate(
    world: World,
    arms: Sequence[ArmSpec],
    config: SimulateConfig,
    *,
    log: Callable[[str], None] = lambda _: None,
) -> SimulationResult:
    """Run every arm over one shared marketplace; the first arm is the control."""
    names = [arm.name for arm in arms]
    if not arms or len(set(names)) != len(names):
        raise UnitargetError(f"the simulation needs at least one arm and distinct arm names, got {names}")
    started = time.perf_counter()
    market = build_marketplace(world, config)
    opp = market.opportunities
    seconds: dict[str, float] = {"marketplace": time.perf_counter() - started}
    running = int((market.campaigns.budget > 0).sum())
    log(f"simulating {len(opp):,} opportunities over {config.days} days in {config.markets} markets "
        f"({running:,} campaigns, {opp.candidates.shape[1]} candidates each)")
    cubes, served = [], {}
    for arm in arms:
        t0 = time.perf_counter()
        scorer = _scorer(arm, config)
        rank = _rank(market, scorer.values(world, market), scorer.uses_cost and config.value_per_cost)
        t1 = time.perf_counter()
        served[arm.name] = serve(market, rank)
        outcomes = draw_outcomes(world, market, served[arm.name])
        cubes.append(_cube(market, served[arm.name], outcomes))
        seconds[arm.name] = time.perf_counter() - t0
        log(f"arm {arm.name}: scored in {t1 - t0:.1f} s, served and drawn in "
            f"{time.perf_counter() - t1:.1f} s")
    cube = np.stack(cubes)
    t0 = time.perf_counter()
    comparison = compare(cube, 0, bootstrap=config.bootstrap, permutations=config.permutations,
                         seed=config.seed)
    seconds["metrics"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    summary = _summary(world, market, seconds)
    return SimulationResult(config, tuple(names), names[0], cube, comparison, summary, served)


def find_world(directory: Path) -> Path:
    """``DIR/world`` (a directory written by ``unitarget synth``) or ``DIR`` itself if it is a world."""
    directory = Path(directory)
    for candidate in (directory / "world", directory):
        if (candidate / "world.json").is_file():
            return candidate
    expected = directory / "world" / "world.json"
    raise UnitargetError(f"{directory} holds no synthetic world (expected {expected})")


def _scorer(arm: ArmSpec, config: SimulateConfig) -> Scorer:
    if arm.source == ORACLE:
        return OracleScorer(config.objective)
    if arm.source == RANDOM:
        return RandomScorer(config.seed)
    model = arm.source if isinstance(arm.source, TrainedModel) else load_model(arm.source)
    return ModelScorer(model, config.objective, rows=config.score_rows)


def _rank(market: Marketplace, value: np.ndarray, per_cost: bool) -> np.ndarray:
    """(N, K) rank of each candidate: value, or value per unit of price; -inf where there is none."""
    candidates = market.opportunities.candidates
    if per_cost:
        campaign = market.campaigns.creative_campaign[np.maximum(candidates, 0)]
        value = value / market.campaigns.price[campaign]
    return np.where((candidates >= 0) & np.isfinite(value), value, -np.inf)


def _cube(market: Marketplace, served: Served, outcomes: Outcomes) -> np.ndarray:
    rows = outcomes.rows
    values = {
        "impressions": np.ones(len(rows)), "spend": served.cost[rows], "clicks": outcomes.click,
        "streams": outcomes.stream, "likes": outcomes.like, "follows": outcomes.follow,
        "expected_streams": outcomes.p_stream,
    }  # fmt: skip
    assert set(values) == set(COUNTS)
    return count_cube(market.opportunities.market[rows], outcomes.tier, values, market.n_markets)


def _summary(world: World, market: Marketplace, seconds: dict[str, float]) -> dict[str, Any]:
    camp = market.campaigns
    running = camp.budget > 0
    shows = world.campaigns.ad_show[running]
    return {
        "days": [market.first_day, market.first_day + market.n_days - 1],
        "markets": market.n_markets,
        "users": world.n_users,
        "opportunities": len(market.opportunities),
        "campaigns": int(running.sum()),
        "new_show_campaigns": int(world.is_new_show[shows].sum()),
        "budget_per_arm": float(camp.budget.sum()),
        "seconds": seconds,
    }
