"""The A/B simulator's marketplace, pacing and accounting, on the tiny world (seconds)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from unitarget.config import SimulateConfig
from unitarget.simulation import ArmSpec, simulate
from unitarget.simulation.market import HOURS, build_marketplace, sample_distinct
from unitarget.simulation.metrics import METRICS
from unitarget.simulation.policy import allocate
from unitarget.synth import World, vocab

SMALL = SimulateConfig(markets=6, days=5, opportunities_per_day=3_000, bootstrap=200, permutations=200)
ARMS = [ArmSpec("random", "random"), ArmSpec("oracle", "oracle")]


@pytest.fixture(scope="module")
def world(tiny_log_path) -> World:
    return World.load(tiny_log_path.parent / "world")


@pytest.fixture(scope="module")
def result(world):
    return simulate(world, ARMS, SMALL)


def test_marketplace_is_a_function_of_the_seed(world):
    a, b = build_marketplace(world, SMALL), build_marketplace(world, SMALL)
    for f in fields(a.opportunities):
        np.testing.assert_array_equal(getattr(a.opportunities, f.name), getattr(b.opportunities, f.name))
    np.testing.assert_array_equal(a.campaigns.budget, b.campaigns.budget)
    other = build_marketplace(world, SMALL.model_copy(update={"seed": 1}))
    assert not np.array_equal(a.opportunities.user, other.opportunities.user)


def test_opportunities_are_sorted_and_sliced_by_hour(world):
    opp = build_marketplace(world, SMALL).opportunities
    assert np.all(np.diff(opp.ts_us) >= 0)
    assert len(opp) == opp.slice_offsets[-1] and len(opp.slice_offsets) == SMALL.days * HOURS + 1
    for s in (0, 30, 100):
        rows = slice(opp.slice_offsets[s], opp.slice_offsets[s + 1])
        assert np.all(opp.day[rows] == world.params.n_days - SMALL.days + s // HOURS)
        assert np.all(opp.hour[rows] == s % HOURS)


def test_candidates_are_distinct_running_campaigns_of_the_market_in_the_right_format(world):
    market = build_marketplace(world, SMALL)
    opp, camp = market.opportunities, market.campaigns
    row, col = np.nonzero(opp.candidates >= 0)
    creative = opp.candidates[row, col]
    campaign = camp.creative_campaign[creative]
    assert len(row) > 0.5 * opp.candidates.size  # the tiny world still fills most slots
    assert np.all(camp.market[campaign] == opp.market[row])
    assert np.all((camp.start[campaign] <= opp.day[row]) & (opp.day[row] < camp.end[campaign]))
    assert np.all(vocab.AD_SURFACE_OF_FORMAT[world.campaigns.creative_format[creative]] == opp.surface[row])
    ordered = np.sort(np.where(opp.candidates >= 0, opp.candidates, -np.arange(1, 9)), axis=1)
    assert not np.any(ordered[:, 1:] == ordered[:, :-1])


@pytest.mark.parametrize("pool", [3, 8, 20, 5_000])
def test_sample_distinct_gives_distinct_indices_in_range(pool):
    picks = sample_distinct(np.random.default_rng(0), 2_000, pool, 8)
    assert picks.shape == (2_000, min(8, pool))
    assert picks.min() >= 0 and picks.max() < pool
    ordered = np.sort(picks, axis=1)
    assert not np.any(ordered[:, 1:] == ordered[:, :-1])


def test_allocate_serves_the_best_candidates_within_capacity():
    # three opportunities, two candidates each, campaigns 0 and 1
    campaign = np.array([[0, 1], [0, 1], [0, -1]])
    rank = np.array([[0.9, 0.5], [0.8, 0.7], [0.3, -np.inf]])
    # campaign 0 can buy one impression: it takes its best proposal (row 0); row 1 falls back to 1
    np.testing.assert_array_equal(allocate(campaign, rank, np.array([1, 5])), [0, 1, -1])
    np.testing.assert_array_equal(allocate(campaign, rank, np.array([5, 0])), [0, 0, 0])
    np.testing.assert_array_equal(allocate(campaign, rank, np.array([0, 0])), [-1, -1, -1])


def test_spend_never_exceeds_a_budget_and_pacing_spreads_it(world, result):
    market = build_marketplace(world, SMALL)
    camp, opp = market.campaigns, market.opportunities
    for served in result.served.values():
        filled = served.filled
        spend = np.bincount(served.campaign[filled], weights=served.cost[filled], minlength=len(camp))
        assert np.all(spend <= camp.budget * (1 + 1e-9))
        assert spend.sum() > 0.5 * camp.budget.sum()  # and budgets are mostly spent
        # no campaign spends its budget in the first hours: by 6 a.m. of its first day, at most
        # the paced share (6 % of the day's traffic) of a day's target
        early = served.filled & (opp.hour < 6) & (opp.day == camp.start[np.maximum(served.campaign, 0)])
        early_spend = np.bincount(served.campaign[early], weights=served.cost[early], minlength=len(camp))
        long_flight = (camp.end - camp.start) >= 2
        allowed = 0.1 * camp.budget + camp.price  # rounding: one impression
        assert np.all(early_spend[long_flight] <= allowed[long_flight])


def test_every_arm_gets_the_same_opportunities_and_arms_do_not_interact(world, result):
    n = len(build_marketplace(world, SMALL).opportunities)
    assert {len(s.creative) for s in result.served.values()} == {n}
    alone = simulate(world, [ArmSpec("oracle", "oracle")], SMALL)
    np.testing.assert_array_equal(alone.served["oracle"].creative, result.served["oracle"].creative)
    np.testing.assert_array_equal(alone.cube[0], result.cube[1])


def test_ecps_is_spend_over_streams_and_i2s_streams_over_impressions(result):
    for arm in result.arms:
        for segment in ("all", "less_streamed", "tier_2"):
            get = lambda metric: result.get("value", arm, segment, metric)  # noqa: E731
            assert get("ecps") == pytest.approx(get("spend") / get("streams"))
            assert get("i2s") == pytest.approx(get("streams") / get("impressions"))
    served = result.served["oracle"]
    assert result.get("value", "oracle", "all", "spend") == pytest.approx(served.cost.sum())
    assert result.get("value", "oracle", "all", "impressions") == served.filled.sum()


def test_the_simulation_is_deterministic(world, result):
    again = simulate(world, ARMS, SMALL)
    np.testing.assert_array_equal(again.cube, result.cube)
    np.testing.assert_array_equal(again.comparison.p_value, result.comparison.p_value)


def test_the_oracle_beats_random_targeting_by_a_clear_margin(world):
    config = SMALL.model_copy(update={"markets": 10, "days": 7, "opportunities_per_day": 6_000})
    r = simulate(world, ARMS, config)
    assert r.get("change", "oracle", "all", "i2s") > 0.5  # +50 % streams per impression at least
    assert r.get("change", "oracle", "all", "ecps") < -0.3  # 30 % cheaper streams at least
    for metric in ("i2s", "ecps"):
        assert r.get("p_value", "oracle", "all", metric) < 0.01
        assert r.get("ci_low", "oracle", "all", metric) * r.get("ci_high", "oracle", "all", metric) > 0
    assert r.get("change", "oracle", "less_streamed", "i2s") > 0.5


def test_metric_tables_cover_every_arm_segment_and_metric(result):
    assert result.comparison.change.shape == (2, 11, len(METRICS))
    control = result.comparison.change[0]  # the control against itself: no change, p = 1
    assert np.all((control == 0) | np.isnan(control))
    assert np.all(result.comparison.p_value[0] == 1)
