"""The informed oracle: log rows back to the world, and the oracle between a show-blind one and the full one."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from unitarget.data.split import split_newest_days
from unitarget.errors import UnitargetError
from unitarget.evaluation.informed import InformedOracle
from unitarget.evaluation.metrics import average_precision
from unitarget.evaluation.user_posterior import fit_user_effects, user_prior_of
from unitarget.evaluation.world_rows import label_arrays, placements_of
from unitarget.validation import normalise_ts
from unitarget.synth import LabelModel, World, WorldParams, generate_log

#: Shows differ clearly in their own quality, which no feature shows: only their impressions reveal it.
SHOW_EFFECT = LabelModel(show_quality_sd=1.0)


def _world(**params) -> tuple[World, pa.Table, pa.Table]:
    world = World.generate(WorldParams(**params))
    split = split_newest_days(generate_log(world), 5, purpose="testing", setting="test")
    return world, split.older, split.newest


def _stream_ap(test: pa.Table, p: np.ndarray) -> float:
    return average_precision(test.column("stream").to_numpy(zero_copy_only=False).astype(float), p)


def _aps(world: World, train: pa.Table, test: pa.Table) -> tuple[float, float, float]:
    """Stream AP on the test rows of the show-blind oracle (no training rows), the informed one, the full one."""
    blind = InformedOracle.fit(world, train.slice(0, 0)).probabilities(test)["stream"]
    informed = InformedOracle.fit(world, train).probabilities(test)["stream"]
    return _stream_ap(test, blind), _stream_ap(test, informed), _stream_ap(test, test.column("true_stream").to_numpy())


@pytest.fixture(scope="module")
def tiny() -> tuple[World, pa.Table, pa.Table]:
    return _world(n_users=600, n_shows=120, n_impressions=24_000, n_days=21, seed=5, labels=SHOW_EFFECT)


def test_log_rows_map_back_to_the_world_exactly(tiny) -> None:
    world, train, _ = tiny
    truth = world.marginals(placements_of(world, train))
    for label in ("stream", "click", "follow"):
        np.testing.assert_array_equal(truth[label], train.column(f"true_{label}").to_numpy())


def test_the_informed_oracle_lies_between_the_show_blind_and_the_full_oracle(tiny) -> None:
    blind, informed, full = _aps(*tiny)
    assert blind < informed < full


def test_a_show_nobody_saw_keeps_its_prior_and_a_seen_one_moves_toward_its_truth(tiny) -> None:
    world, train, _ = tiny
    oracle = InformedOracle.fit(world, train)
    prior = InformedOracle.fit(world, train.slice(0, 0)).informed.shows
    unseen, seen = oracle.exposure == 0, oracle.exposure >= np.percentile(oracle.exposure, 75)
    np.testing.assert_array_equal(oracle.informed.shows.quality[unseen], prior.quality[unseen])

    def error(shows) -> float:
        return float(np.abs(shows.quality[seen] - world.shows.quality[seen]).mean())
    assert error(oracle.informed.shows) < error(prior)


def test_with_ample_exposure_the_informed_oracle_reaches_the_full_one() -> None:
    """Ten shows with thousands of impressions each: almost all of the gap between the show-blind and
    the full oracle closes, and more of it than with a fiftieth of the training rows."""
    world, train, test = _world(n_users=600, n_shows=10, n_impressions=100_000, n_days=14, seed=3, latent_dim=4,
                                publishers_per_show=1.0, labels=SHOW_EFFECT)
    blind, informed, full = _aps(world, train, test)
    few = _stream_ap(test, InformedOracle.fit(world, train.take(np.arange(0, train.num_rows, 50)))
                     .probabilities(test)["stream"])
    closed, closed_with_few = (informed - blind) / (full - blind), (few - blind) / (full - blind)
    assert closed_with_few < closed
    assert closed > 0.95
    assert informed <= full + 1e-3


def test_rows_of_another_world_are_refused(tiny) -> None:
    world, train, test = tiny
    other = World.generate(WorldParams(n_users=600, n_shows=120, n_impressions=24_000, n_days=21, seed=6))
    with pytest.raises(UnitargetError, match="not drawn from"):
        InformedOracle.fit(other, train.slice(0, 10)).probabilities(test)
    small = World.generate(WorldParams(n_users=100, n_shows=20, n_impressions=1_000, n_days=21, seed=5))
    with pytest.raises(UnitargetError, match="more than the world's"):
        InformedOracle.fit(small, train)



def test_learning_users_too_costs_ap_and_moves_each_users_effects_toward_the_truth(tiny) -> None:
    """With users' propensities and taste learned from 24 k impressions of 600 users and their histories instead of
    known, the oracle ranks the test rows worse; each seen user's estimates are nearer the truth than the prior mean
    (0 for a propensity, the user's demographic cell for taste); an unseen user's propensities stay at 0."""
    world, train, test = tiny
    known = InformedOracle.fit(world, train)
    learned = InformedOracle.fit(world, train, learn_users=True)
    assert _stream_ap(test, learned.probabilities(test)["stream"]) < _stream_ap(test, known.probabilities(test)["stream"])
    seen = np.bincount(placements_of(world, train).user, minlength=world.n_users) > 0
    truth, estimate = world.users, learned.informed.users
    for field in ("base", "promo_propensity", "format_propensity", "like_propensity", "follow_propensity"):
        true, est = getattr(truth, field)[seen], getattr(estimate, field)[seen]
        assert np.mean((est - true) ** 2) < np.mean(true**2), field
    prior = user_prior_of(world).taste_mean
    assert np.mean((estimate.taste - truth.taste) ** 2) < np.mean((prior - truth.taste) ** 2)
    np.testing.assert_array_equal(estimate.base[~seen], 0.0)


def test_more_rows_per_user_pin_their_taste_down_further() -> None:
    """400 users with about 180 training impressions each: the taste estimate's error falls below what a tenth of
    the rows gives, which is itself below the prior's (the history alone already informs it)."""
    world, train, _ = _world(n_users=400, n_shows=60, n_impressions=100_000, n_days=14, seed=4)

    def fit(rows: pa.Table) -> np.ndarray:
        return fit_user_effects(world, placements_of(world, normalise_ts(rows)), label_arrays(rows)).taste

    def error(taste: np.ndarray) -> float:
        return float(np.mean((taste - world.users.taste) ** 2))

    few = fit(train.take(np.arange(0, train.num_rows, 10)))
    assert error(fit(train)) < error(few) < error(user_prior_of(world).taste_mean)
