"""A/B metrics per arm and segment, relative changes to the control, intervals and p-values.

Counts are kept per (arm, market, segment) — a "cube" — and every metric is a ratio of sums over
markets, as a live test reports it:

    i2s  = streams / impressions          CTR = clicks / impressions
    eCPS = spend / streams                relative change = metric_arm / metric_control - 1

Segments are those of offline evaluation (evaluation/segments.py): all, each tier 0..7 of the
served show that day, less-streamed (tiers 3–7, < 5,000 streams) and high-stream.

Uncertainty comes from markets, which are independent (own users, own campaigns):

- **95 % interval**: percentile bootstrap over markets, resampling the same markets for every
  arm (the arms are paired within a market).
- **p-value**: a sign-flip randomisation test: under "the arm's policy makes no difference" the
  two arms' results within a market are exchangeable, so swapping them in any subset of markets
  gives the null distribution of the relative change. Exact (all 2^M flips) when 2^M is at most
  ``permutations``, else that many random flips. With M markets no p-value is below 2^(1-M),
  so p < 0.05 needs at least 6 markets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import product

import numpy as np

from unitarget.contract import LESS_STREAMED_MIN_TIER, N_TIERS
from unitarget.evaluation.segments import SEGMENTS

#: Counts summed per (arm, market, segment), in this order along the cube's last axis.
COUNTS = ("impressions", "spend", "clicks", "streams", "likes", "follows", "expected_streams")
#: Metrics derived from the counts, in this order along the metric axis.
METRICS = ("impressions", "spend", "streams", "i2s", "ecps", "ctr", "follows", "clicks", "expected_i2s")
METRIC_LABELS = {
    "impressions": "impressions", "spend": "spend", "streams": "# streams", "i2s": "i2s", "ecps": "eCPS",
    "ctr": "CTR", "follows": "follows", "clicks": "clicks", "expected_i2s": "expected i2s",
}  # fmt: skip
_C = {name: i for i, name in enumerate(COUNTS)}


def count_cube(
    market: np.ndarray, tier: np.ndarray, values: dict[str, np.ndarray], n_markets: int
) -> np.ndarray:
    """(M, S, Q) sums of each count over the impressions of each market and segment.

    ``market`` and ``tier`` are (n,) per served impression; ``values`` maps each name of
    :data:`COUNTS` to an (n,) array. Each impression falls in three segments: all, its tier, and
    less-streamed or high-stream.
    """
    n_segments = len(SEGMENTS)
    tier = np.asarray(tier, dtype=np.int64)
    group = np.where(tier >= LESS_STREAMED_MIN_TIER, 1 + N_TIERS, 2 + N_TIERS)
    segment = np.concatenate([np.zeros_like(tier), 1 + tier, group])  # (3n,) positions in SEGMENTS
    key = np.tile(np.asarray(market, dtype=np.int64), 3) * n_segments + segment
    cube = np.empty((n_markets * n_segments, len(COUNTS)))
    for q, name in enumerate(COUNTS):
        weights = np.tile(np.asarray(values[name], dtype=np.float64), 3)
        cube[:, q] = np.bincount(key, weights=weights, minlength=n_markets * n_segments)
    return cube.reshape(n_markets, n_segments, len(COUNTS))


def derive(totals: np.ndarray) -> np.ndarray:
    """(..., Q) summed counts -> (..., len(METRICS)) metrics; NaN where a denominator is 0."""
    def ratio(a: str, b: str) -> np.ndarray:
        num, den = totals[..., _C[a]], totals[..., _C[b]]
        return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)

    columns = {
        "impressions": totals[..., _C["impressions"]], "spend": totals[..., _C["spend"]],
        "streams": totals[..., _C["streams"]], "i2s": ratio("streams", "impressions"),
        "ecps": ratio("spend", "streams"), "ctr": ratio("clicks", "impressions"),
        "follows": totals[..., _C["follows"]], "clicks": totals[..., _C["clicks"]],
        "expected_i2s": ratio("expected_streams", "impressions"),
    }  # fmt: skip
    return np.stack([columns[name] for name in METRICS], axis=-1)


def relative(arm: np.ndarray, control: np.ndarray) -> np.ndarray:
    """metric_arm / metric_control - 1, NaN where the control's metric is 0 or undefined."""
    ok = np.isfinite(control) & (control != 0) & np.isfinite(arm)
    return np.divide(arm, control, out=np.full(np.broadcast(arm, control).shape, np.nan), where=ok) - 1.0


@dataclass(frozen=True)
class Comparison:
    """Every arm against the control: arrays of shape (arms, segments, metrics)."""

    value: np.ndarray  # the metric summed over markets
    change: np.ndarray  # relative change to the control
    ci_low: np.ndarray  # 2.5 % bootstrap percentile of the change
    ci_high: np.ndarray  # 97.5 %
    p_value: np.ndarray  # two-sided sign-flip p-value of the change


def compare(cube: np.ndarray, control: int, *, bootstrap: int, permutations: int, seed: int) -> Comparison:
    """Relative change of every arm's metrics to arm ``control``'s, with intervals and p-values.

    ``cube`` is (A, M, S, Q) counts per arm, market, segment.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    n_markets = cube.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = derive(cube.sum(axis=1))  # (A, S, K)
        change = relative(value, value[control])
        picks = rng.integers(0, n_markets, size=(bootstrap, n_markets))
        weights = np.zeros((bootstrap, n_markets))
        np.add.at(weights, (np.arange(bootstrap)[:, None], picks), 1.0)
        boot = derive(np.einsum("bm,amsq->basq", weights, cube))  # (B, A, S, K)
        boot_change = relative(boot, boot[:, control : control + 1])
        with warnings.catch_warnings():  # segments no arm served have no interval: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            ci_low, ci_high = np.nanpercentile(boot_change, [2.5, 97.5], axis=0)
        flips, exact = _flips(n_markets, permutations, rng)  # (P, M) 1 = swap the arms in that market
        p_value = np.ones_like(change)
        for arm in range(cube.shape[0]):
            if arm != control:
                p_value[arm] = _sign_flip_p(cube[arm], cube[control], change[arm], flips, exact)
    return Comparison(value, change, ci_low, ci_high, p_value)


def _flips(n_markets: int, permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(P, M) sign patterns and whether they are all 2^M of them (an exact test)."""
    if 2**n_markets <= permutations:
        return np.array(list(product((0.0, 1.0), repeat=n_markets))), True
    return (rng.random((permutations, n_markets)) < 0.5).astype(np.float64), False


def _sign_flip_p(
    arm: np.ndarray, control: np.ndarray, observed: np.ndarray, flips: np.ndarray, exact: bool
) -> np.ndarray:
    """(S, K) two-sided p-values: share of flips whose |log ratio| reaches the observed one (the log
    ratio, not the relative change, so that swapping every market mirrors the statistic). The
    observed assignment counts once: it is among the exact patterns, and added otherwise."""
    keep = 1.0 - flips
    as_arm = np.einsum("pm,msq->psq", keep, arm) + np.einsum("pm,msq->psq", flips, control)
    as_control = np.einsum("pm,msq->psq", keep, control) + np.einsum("pm,msq->psq", flips, arm)
    null = np.log1p(relative(derive(as_arm), derive(as_control)))  # (P, S, K) log ratio: symmetric
    extreme = np.abs(null) >= np.abs(np.log1p(observed))[None] * (1 - 1e-12)  # under swapping arms
    p = extreme.sum(axis=0) / len(flips) if exact else (1 + extreme.sum(axis=0)) / (1 + len(flips))
    return np.where(np.isfinite(observed), p, np.nan)
