"""A/B metrics: counts per segment, derived ratios, relative changes, intervals and p-values."""

from __future__ import annotations

import numpy as np
import pytest

from unitarget.evaluation.segments import SEGMENTS
from unitarget.simulation.metrics import COUNTS, METRICS, compare, count_cube, derive, relative

S = {name: i for i, name in enumerate(SEGMENTS)}
Q = {name: i for i, name in enumerate(COUNTS)}
K = {name: i for i, name in enumerate(METRICS)}


def _values(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    stream = rng.random(n) < 0.3
    return {"impressions": np.ones(n), "spend": rng.random(n), "clicks": rng.random(n) < 0.2,
            "streams": stream,
            "likes": stream & (rng.random(n) < 0.5), "follows": stream & (rng.random(n) < 0.3),
            "expected_streams": np.full(n, 0.3)}


def test_count_cube_puts_each_impression_in_all_its_tier_and_its_group():
    market = np.array([0, 0, 1, 1, 1])
    tier = np.array([0, 3, 7, 2, 3])
    cube = count_cube(market, tier, _values(5, np.random.default_rng(0)), n_markets=2)
    imps = cube[..., Q["impressions"]]
    np.testing.assert_array_equal(imps[:, S["all"]], [2, 3])
    np.testing.assert_array_equal(imps[:, S["less_streamed"]], [1, 2])
    np.testing.assert_array_equal(imps[:, S["high_stream"]], [1, 1])
    np.testing.assert_array_equal(imps[1, [S[f"tier_{t}"] for t in range(8)]], [0, 0, 1, 1, 0, 0, 0, 1])
    np.testing.assert_allclose(cube[:, S["all"]], cube[:, S["less_streamed"]] + cube[:, S["high_stream"]])


def test_derive_gives_the_paper_ratios_and_nan_without_a_denominator():
    totals = np.zeros(len(COUNTS))
    for name, value in {"impressions": 1000, "spend": 12.0, "clicks": 9, "streams": 20,
                        "expected_streams": 18}.items():
        totals[Q[name]] = value
    m = derive(totals)
    assert m[K["i2s"]] == pytest.approx(0.02)
    assert m[K["ecps"]] == pytest.approx(0.6)
    assert m[K["ctr"]] == pytest.approx(0.009)
    assert m[K["expected_i2s"]] == pytest.approx(0.018)
    assert np.isnan(derive(np.zeros(len(COUNTS)))[K["ecps"]])
    assert relative(np.array(1.2), np.array(1.0)) == pytest.approx(0.2)
    assert np.isnan(relative(np.array(1.0), np.array(0.0)))


def _cube(n_markets: int, lift: float, seed: int = 0) -> np.ndarray:
    """(2, M, S, Q): a control and an arm whose streams are ``lift`` times the control's."""
    rng = np.random.default_rng(seed)
    control = np.stack([count_cube(np.zeros(400, dtype=int), rng.integers(0, 8, 400), _values(400, rng), 1)[0]
                        for _ in range(n_markets)])
    arm = control.copy()
    arm[..., Q["streams"]] *= lift
    return np.stack([control, arm])


def test_identical_arms_show_no_change_and_no_significance():
    cube = _cube(8, 1.0)
    c = compare(cube, 0, bootstrap=100, permutations=1_000, seed=0)
    np.testing.assert_allclose(c.change[1, S["all"]], 0.0, atol=1e-12)
    assert np.all(c.p_value[1, S["all"], [K["i2s"], K["ecps"]]] == 1.0)


def test_a_consistent_lift_is_significant_and_inside_its_interval():
    c = compare(_cube(8, 1.25), 0, bootstrap=300, permutations=1_000, seed=0)
    i2s, ecps = (c.change[1, S["all"], K[m]] for m in ("i2s", "ecps"))
    assert i2s == pytest.approx(0.25)
    assert ecps == pytest.approx(1 / 1.25 - 1)
    # exact test over 2^8 sign patterns: only "no swap" and "swap all" reach |log 1.25|
    assert c.p_value[1, S["all"], K["i2s"]] == pytest.approx(2 / 256)
    assert c.p_value[1, S["all"], K["ecps"]] == pytest.approx(2 / 256)
    assert c.ci_low[1, S["all"], K["i2s"]] <= i2s <= c.ci_high[1, S["all"], K["i2s"]]


def test_with_few_markets_nothing_can_be_significant():
    c = compare(_cube(3, 2.0), 0, bootstrap=50, permutations=1_000, seed=0)
    assert c.p_value[1, S["all"], K["i2s"]] == pytest.approx(2 / 8)
