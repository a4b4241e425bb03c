"""How an arm values each (opportunity, candidate creative) pair: a model, the truth, or chance.

The value is the objective ``sum_label w_label * P(label)`` (``simulate.objective``; the ads stream
probability by default). A trained model predicts it from contract-format rows built exactly as
the world's log is (``synth.table.build_table``), so the model sees what it would see in
production, unknown new shows and creatives included (they score through the OOV rows). The
oracle uses the world's true probabilities; the random arm ignores the pair.

Scoring never depends on budgets, so every pair of the whole stream is scored up front in large
batches of ``score_rows`` rows (one model call each), not once per opportunity or per slice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np
import pyarrow as pa

from unitarget import contract
from unitarget.errors import UnitargetError
from unitarget.evaluation.heads import objective_weights
from unitarget.trained import TrainedModel
from unitarget.simulation.market import Marketplace
from unitarget.synth import World, vocab
from unitarget.synth.placements import Placements, SampledLog
from unitarget.synth.table import build_table

_RANDOM_STREAM = 5  # SeedSequence key of the random arm, apart from the marketplace's streams


class Scorer(Protocol):
    """Anything that values every candidate pair of a marketplace: (N, K) float64, NaN on padding."""

    uses_cost: bool  # whether its value is divided by the price to rank candidates

    def values(self, world: World, market: Marketplace) -> np.ndarray:
        """(N, K) float64 value of every (opportunity, candidate) pair of ``market``; NaN where the candidate slot is
        padding (-1)."""
        ...


def pair_chunks(
    world: World, market: Marketplace, rows: int
) -> Iterator[tuple[np.ndarray, Placements, np.ndarray]]:
    """Every (opportunity, candidate) pair with a candidate, ``rows`` at a time.

    Yields (flat indices into the (N, K) candidate matrix, the pairs as ad placements, their
    timestamps in microseconds).
    """
    opp = market.opportunities
    flat = np.flatnonzero(opp.candidates.ravel() >= 0)
    k = opp.candidates.shape[1]
    for lo in range(0, len(flat), rows):
        index = flat[lo : lo + rows]
        row, creative = index // k, opp.candidates.ravel()[index]
        placements = Placements(
            user=opp.user[row], show=world.campaigns.creative_show[creative],
            source=np.full(len(row), vocab.SOURCE_ADS), creative=creative, surface=opp.surface[row],
            device=opp.device[row], slot=opp.slot[row], layout=np.full(len(row), -1),
            hour=opp.hour[row], day=opp.day[row],
        )  # fmt: skip
        yield index, placements, opp.ts_us[row]


def _empty(market: Marketplace) -> np.ndarray:
    return np.full(market.opportunities.candidates.shape, np.nan)


class ModelScorer:
    """A trained run's predicted probabilities, combined by the objective's label weights."""

    uses_cost = True

    def __init__(self, model: TrainedModel, objective: Mapping[str, float], rows: int = 131_072) -> None:
        self.model = model
        self.objective = dict(objective)
        self.rows = rows
        self.weights = _task_weights(model, self.objective)  # (T,) weight of each task's column

    def values(self, world: World, market: Marketplace) -> np.ndarray:
        """Objective-weighted sum of the model's predicted probabilities for each pair, scored ``rows`` pairs per call
        on contract rows built like the log."""
        out = _empty(market)
        campaign_of = market.campaigns.creative_campaign
        for index, p, ts_us in pair_chunks(world, market, self.rows):
            table = candidate_table(world, p, campaign_of[p.creative], ts_us)
            out.ravel()[index] = self.model.probabilities(table).astype(np.float64) @ self.weights
        return out


class OracleScorer:
    """The world's true probabilities: the best any model could do with this objective."""

    uses_cost = True

    def __init__(self, objective: Mapping[str, float], rows: int = 262_144) -> None:
        self.objective = dict(objective)
        self.rows = rows

    def values(self, world: World, market: Marketplace) -> np.ndarray:
        """Σ_label w_label · P(label) of each pair from the world's true marginals (NaN ones, like on audio ads, count
        as 0)."""
        out = _empty(market)
        for index, p, _ in pair_chunks(world, market, self.rows):
            truth = world.marginals(p)
            out.ravel()[index] = sum(w * np.nan_to_num(truth[label]) for label, w in self.objective.items())
        return out


class RandomScorer:
    """A uniformly random candidate for every opportunity: targeting without information."""

    uses_cost = False

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def values(self, world: World, market: Marketplace) -> np.ndarray:
        """A uniform draw per pair from a stream of (seed, _RANDOM_STREAM), so reruns draw the same; NaN on padding."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _RANDOM_STREAM]))
        out = rng.random(market.opportunities.candidates.shape)
        return np.where(market.opportunities.candidates >= 0, out, np.nan)


def candidate_table(world: World, p: Placements, campaign: np.ndarray, ts_us: np.ndarray) -> pa.Table:
    """Contract rows for candidate pairs, built like the world's log; labels null (not yet observed)."""
    unknown = {name: np.full(len(p), -1, dtype=np.int8) for name in contract.LABELS}
    truth = {name: np.full(len(p), np.nan) for name in contract.LABELS}
    return build_table(world, SampledLog(p, campaign.astype(np.int64), ts_us, unknown, truth))


def _task_weights(model: TrainedModel, objective: Mapping[str, float]) -> np.ndarray:
    """(T,) weights on the model's task columns: each label's weight on the head serving it on ad
    impressions (``evaluation.heads``; for ``stream`` the promotions head of the Fig. 2A baseline)."""
    names = list(model.model.task_names)
    try:
        by_task = objective_weights(model.config, objective, contract.ADS)
    except KeyError as missing:
        raise UnitargetError(f"simulate.objective weighs {missing.args[0]!r}, but the model has no task for it "
                             f"(tasks: {', '.join(names)})") from None
    weights = np.zeros(len(names))
    for task, weight in by_task.items():
        weights[names.index(task)] += weight
    return weights
