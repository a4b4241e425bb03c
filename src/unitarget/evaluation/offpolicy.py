"""Off-policy estimators of a target policy's mean reward from a logged-bandit log (numpy only).

Every estimator here is a ratio of two sums over logged impressions, ``Σ a_i / Σ b_i``:

- IPS: ``a_i = w_i r_i``, ``b_i = 1`` with ``w_i = π_e(a_i|x_i) / p_i``;
- self-normalised IPS: ``a_i = w_i r_i``, ``b_i = w_i``;
- doubly robust (Dudík et al. 2011): ``a_i = Σ_a π_e(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i))``,
  ``b_i = 1``;
- the on-policy mean (the logging policy's own value): ``a_i = r_i``, ``b_i = 1``.

Writing them so lets one vectorised bootstrap serve all of them: resampling impressions resamples
the (a, b) pairs together. The formulas, assumptions and limits are in docs/offpolicy.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from unitarget.errors import UnitargetError

__all__ = ["N_RESAMPLES", "Estimate", "doubly_robust", "effective_sample_size", "greedy_policy", "ips", "on_policy",
           "snips", "softmax_policy", "uniform_policy"]

#: Bootstrap resamples per interval unless told otherwise.
N_RESAMPLES: Final = 1_000
#: Resampled index entries held at once (resamples × impressions), so memory stays bounded.
_BLOCK_ENTRIES: Final = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A policy value with its bootstrap percentile interval: what a report row needs to say how
    sure the estimate is (``n`` impressions; ``ess`` is the effective sample size of the importance
    weights, ``n`` for an on-policy mean)."""

    estimate: float
    low: float
    high: float
    n: int
    ess: float

    def to_dict(self) -> dict[str, float | int]:
        """The fields as JSON types (NaN stays NaN; the JSON writer turns it into null)."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n, "ess": self.ess}


def ips(rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray, *, seed: int = 0,
        n_resamples: int = N_RESAMPLES, level: float = 0.95) -> Estimate:
    """Inverse propensity scoring: ``(1/n) Σ w_i r_i``. Unbiased when every action the target policy
    may take has a positive logging propensity, but its variance grows with the weights."""
    r, p, pi = _checked(rewards, propensities, target)
    w = pi / p
    return _estimate(w * r, np.ones_like(w), w, seed, n_resamples, level)


def snips(rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray, *, seed: int = 0,
          n_resamples: int = N_RESAMPLES, level: float = 0.95) -> Estimate:
    """Self-normalised IPS: ``Σ w_i r_i / Σ w_i``. Slightly biased but bounded by the rewards' range
    and usually of lower variance than IPS; NaN when no logged action has a positive weight."""
    r, p, pi = _checked(rewards, propensities, target)
    w = pi / p
    return _estimate(w * r, w, w, seed, n_resamples, level)


def doubly_robust(rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray, q_logged: np.ndarray,
                  q_target: np.ndarray, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                  level: float = 0.95) -> Estimate:
    """Doubly robust: ``(1/n) Σ [q̂_π(x_i) + w_i (r_i − q̂(x_i, a_i))]``, with ``q_logged`` the reward
    model's estimate for the logged action and ``q_target`` its expectation under the target policy.
    Unbiased if either the propensities or the reward model are right; a good reward model leaves
    only its residuals to be importance-weighted, which narrows the interval."""
    r, p, pi = _checked(rewards, propensities, target)
    q_a, q_pi = _same_length(r, q_logged, "q_logged"), _same_length(r, q_target, "q_target")
    w = pi / p
    return _estimate(q_pi + w * (r - q_a), np.ones_like(w), w, seed, n_resamples, level)


def on_policy(rewards: np.ndarray, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
              level: float = 0.95) -> Estimate:
    """The mean reward of the logs' own policy, with the same bootstrap: the yardstick the off-policy
    estimates are read against."""
    r = _vector(rewards, "rewards")
    ones = np.ones_like(r)
    return _estimate(r, ones, ones, seed, n_resamples, level)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` of importance weights: how many on-policy
    impressions the weighted log is worth (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    squares = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / squares if squares > 0 else 0.0


def greedy_policy(scores: np.ndarray) -> np.ndarray:
    """(N, K) probabilities of the policy that shows each impression's best-scored candidate; tied
    best candidates share the probability evenly, so the policy does not depend on their order."""
    scores = np.asarray(scores, dtype=np.float64)
    best = scores == scores.max(axis=1, keepdims=True)
    return best / best.sum(axis=1, keepdims=True)


def softmax_policy(scores: np.ndarray, temperature: float) -> np.ndarray:
    """(N, K) probabilities ``∝ exp(score / temperature)``: a stochastic policy that keeps exploring
    (small temperatures approach the greedy policy, large ones the uniform one)."""
    if not temperature > 0:
        raise UnitargetError(f"the softmax temperature must be positive, got {temperature}")
    logits = np.asarray(scores, dtype=np.float64) / temperature
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def uniform_policy(n: int, k: int) -> np.ndarray:
    """(N, K) probabilities of choosing among the K candidates uniformly at random: the uniform
    logging policy itself, whose value the log states directly (the known-policy check)."""
    return np.full((n, k), 1.0 / k)


def _estimate(a: np.ndarray, b: np.ndarray, w: np.ndarray, seed: int, n_resamples: int, level: float) -> Estimate:
    if n_resamples < 1:
        raise UnitargetError(f"the bootstrap needs at least one resample, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise UnitargetError(f"the interval's level must lie in (0, 1), got {level}")
    values = _bootstrap(a, b, np.random.default_rng(seed), n_resamples)
    finite = values[np.isfinite(values)]
    tail = (1.0 - level) / 2.0
    low, high = (np.quantile(finite, [tail, 1.0 - tail]) if finite.size else (np.nan, np.nan))
    return Estimate(_ratio(a.sum(), b.sum()), float(low), float(high), int(a.size), effective_sample_size(w))


def _bootstrap(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """``Σ a / Σ b`` over ``n_resamples`` resamples of the n impressions with replacement.

    Only the m rows where a (or, unless b is all ones and ``Σ b`` is n, b) is non-zero change a sum;
    under a greedy target policy m ≈ n / K. When m is small each resample draws how many of its n
    draws land among those rows, Binomial(n, m / n), then that many rows uniformly among them: the
    same distribution as drawing all n, at a cost of about m per resample. Either way resamples are
    drawn in blocks of at most ``_BLOCK_ENTRIES`` indices, so memory stays bounded.
    """
    n = a.size
    plain_mean = bool(np.all(b == 1.0))
    support = np.flatnonzero(a != 0) if plain_mean else np.flatnonzero((a != 0) | (b != 0))
    if 4 * support.size >= n:
        return _dense_bootstrap(a, None if plain_mean else b, rng, n_resamples)
    hits = rng.binomial(n, support.size / n, size=n_resamples)
    a, b = a[support], b[support]
    out = np.empty(n_resamples)
    start = 0
    while start < n_resamples:
        stop = start + max(1, int(np.searchsorted(np.cumsum(hits[start:]), _BLOCK_ENTRIES, side="right")))
        counts = hits[start:stop]
        index = rng.integers(0, max(support.size, 1), size=int(counts.sum()))
        segment = np.repeat(np.arange(stop - start), counts)
        top = np.bincount(segment, weights=a[index], minlength=stop - start)
        bottom = n if plain_mean else np.bincount(segment, weights=b[index], minlength=stop - start)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = top / bottom
        start = stop
    return out


def _dense_bootstrap(a: np.ndarray, b: np.ndarray | None, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """The plain bootstrap, all n rows drawn per resample (``b`` None: the denominator is n)."""
    n = a.size
    block = max(1, _BLOCK_ENTRIES // n)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, block):
        index = rng.integers(0, n, size=(min(block, n_resamples - start), n))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + len(index)] = a[index].sum(axis=1) / (n if b is None else b[index].sum(axis=1))
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator != 0 else float("nan")


def _vector(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise UnitargetError(f"{name} must be one value per impression (1-D), got shape {array.shape}")
    if array.size == 0:
        raise UnitargetError(f"{name} is empty: off-policy evaluation needs at least one impression")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise UnitargetError(f"{name}: {bad.size} NaN or infinite values; first rows {bad[:5].tolist()}")
    return array


def _same_length(reference: np.ndarray, values: np.ndarray, name: str) -> np.ndarray:
    array = _vector(values, name)
    if array.size != reference.size:
        raise UnitargetError(f"{name} has {array.size} values but there are {reference.size} rewards")
    return array


def _checked(rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rewards, logging propensities in (0, 1] and target probabilities in [0, 1], as equal-length
    float vectors; a clear error naming the first offending rows otherwise."""
    r = _vector(rewards, "rewards")
    p = _same_length(r, propensities, "propensities")
    pi = _same_length(r, target, "target probabilities")
    for name, values, bad in (("propensities", p, (p <= 0) | (p > 1)),
                              ("target probabilities", pi, (pi < 0) | (pi > 1))):
        rows = np.flatnonzero(bad)
        if rows.size:
            interval = "(0, 1]" if name == "propensities" else "[0, 1]"
            raise UnitargetError(f"{name}: {rows.size} values outside {interval}; first rows {rows[:5].tolist()} "
                                 f"with values {values[rows[:5]].tolist()}")
    return r, p, pi
