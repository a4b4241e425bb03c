"""The posterior mode of a synthetic world's user effects given what a model sees of each user: the labels of the
user's logged impressions and the listening history and follows the log carries (``InformedOracle.fit(learn_users=
True)``; ``evaluation.informed`` states what the oracle knows).

Parameters, per user: seven propensities (``PROPENSITIES``: general engagement, response to promotions and to each ad
format, the own terms of like and follow; ``synth.labels``) and the taste vector u (K). Given the shows' effects
(the world's, or their estimates), the log posterior is concave in them:

* every training row's chain observations (click; stream on its click branch; like and follow on its stream
  branch) are logistic in logits linear in the propensities and in u (through the affinity u·v/√K);
* the history is a draw of ``L_u`` established shows with weights exp(w_a·u·v/√K)·(1 + streams)^w_p
  (``synth.history``), read here as L_u draws with replacement from that softmax (without replacement, for
  L_u ≪ the shows, it is nearly the same), a log-sum-exp: concave in u;
* each history show is followed with probability sigmoid(c_0 + c_1·u·v/√K): logistic in u;
* priors: N(0, sd²) for each propensity (the generator's), N(m, τ²I) for u with m the mean taste of the user's
  (country, age) cell and τ² the residual variance, both fitted over all users of the world.

Each sweep takes one joint Newton step per user in its 7 + K unknowns, all users at once (a stacked solve). The
history's length (longer for more engaged users) is not used, so the estimate of engagement is slightly pessimistic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from unitarget.evaluation.posterior import CHANNEL, OBSERVED, Rows, rows_of
from unitarget.synth import World
from unitarget.synth.params import TERMS
from unitarget.synth.placements import Placements
from unitarget.synth.population import streams_30d

AFFINITY, USER_BASE = TERMS.index("affinity"), TERMS.index("user_base")
PROPENSITIES = ("base", "promo", "format_audio", "format_video", "format_display", "like", "follow")
_P = len(PROPENSITIES)
_ROW_BLOCK = 16_384  # training rows per block: bounds the per-row Hessians to ~70 MB (K = 16)
_USER_BLOCK = 1_024  # users per block of the history's softmax over the shows


@dataclass(frozen=True)
class UserEffects:
    """Each user's propensities (logit scale, in the order of PROPENSITIES) and taste vector."""

    propensity: np.ndarray  # (n_users, 7)
    taste: np.ndarray  # (n_users, K)

    def applied_to(self, world: World) -> World:
        """``world`` with these effects in place of its users' own."""
        e = self.propensity
        users = dataclasses.replace(world.users, base=e[:, 0].copy(), promo_propensity=e[:, 1].copy(),
                                    format_propensity=e[:, 2:5].copy(), like_propensity=e[:, 5].copy(),
                                    follow_propensity=e[:, 6].copy(), taste=self.taste.copy())
        return World(world.params, users, world.shows, world.campaigns)


@dataclass(frozen=True)
class UserPrior:
    """The Gaussian priors of the module docstring."""

    propensity_var: np.ndarray  # (7,)
    taste_mean: np.ndarray  # (n_users, K)
    taste_var: float


def user_prior_of(world: World) -> UserPrior:
    """The priors, fitted on the world's truth over all users."""
    users, lm = world.users, world.params.labels
    sd = [lm.user_base_sd, lm.user_promo_sd, *[lm.user_format_sd] * 3, lm.user_like_sd, lm.user_follow_sd]
    cell = users.country.astype(np.int64) * (int(users.age.max()) + 1) + users.age
    counts = np.maximum(np.bincount(cell), 1)
    means = np.stack([np.bincount(cell, users.taste[:, k]) / counts for k in range(users.taste.shape[1])], axis=1)
    mean = means[cell]
    return UserPrior(np.maximum(np.square(sd), 1e-6), mean, max(float(np.mean((users.taste - mean) ** 2)), 1e-6))


def fit_user_effects(world: World, p: Placements, observed_labels: dict[str, np.ndarray], *, sweeps: int = 30,
                     tol: float = 5e-3) -> UserEffects:
    """The posterior mode of every user's effects given the labels of the placements ``p`` and the users' histories,
    the shows' and global effects held at ``world``'s values, from the prior mean (module docstring)."""
    prior = user_prior_of(world)
    k = world.params.latent_dim
    # each user's unknowns as one row: the propensities, then the taste
    mean = np.concatenate([np.zeros((world.n_users, _P)), prior.taste_mean], axis=1)
    inverse_var = np.r_[1.0 / prior.propensity_var, np.full(k, 1.0 / prior.taste_var)]
    rows = rows_of(_effects(mean).applied_to(world), p, observed_labels)
    order = np.argsort(rows.user, kind="stable")
    rows = Rows(**{f.name: getattr(rows, f.name)[order] for f in dataclasses.fields(rows)})
    weights = {term: rows.weights(world, term) for term in (USER_BASE, CHANNEL, AFFINITY)}
    history = _History.of(world)
    unknowns, previous = mean.copy(), None
    for _ in range(sweeps):
        grad, hess, eta = _label_terms(rows, weights, world, unknowns - mean)
        if previous is not None and np.abs(eta - previous).max() < tol:
            break
        previous = eta
        history.add_terms(world, unknowns[:, _P:], grad, hess)
        grad -= (unknowns - mean) * inverse_var
        hess[:, np.arange(_P + k), np.arange(_P + k)] += inverse_var
        unknowns = unknowns + np.clip(np.linalg.solve(hess, grad[:, :, None])[:, :, 0], -1.0, 1.0)
    return _effects(unknowns)


def _effects(unknowns: np.ndarray) -> UserEffects:
    return UserEffects(unknowns[:, :_P], unknowns[:, _P:])


def _label_terms(rows: Rows, weights: dict[int, np.ndarray], world: World,
                 delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels' log-likelihood gradient (n_users, 7 + K) and negative Hessian (n_users, 7 + K, 7 + K) in each
    user's unknowns, ``delta`` from the prior mean where ``rows.base`` holds the logits, and the rows' logits (n, 4)."""
    grad, hess = np.zeros(delta.shape), np.zeros((*delta.shape, delta.shape[1]))
    eta = np.empty_like(rows.base)
    for lo in range(0, len(rows.user), _ROW_BLOCK):
        sl = slice(lo, lo + _ROW_BLOCK)
        user = rows.user[sl]
        design = _design(rows, weights, sl, world)  # (b, 4, 7 + K)
        eta[sl] = rows.base[sl] + np.einsum("bjd,bd->bj", design, delta[user])
        prob = 0.5 * (1.0 + np.tanh(0.5 * eta[sl]))
        r = np.where(rows.observed[sl], rows.y[sl] - prob, 0.0)
        h = np.where(rows.observed[sl], prob * (1.0 - prob), 0.0)
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
        grad[user[starts]] += np.add.reduceat(np.einsum("bj,bjd->bd", r, design), starts)
        hess[user[starts]] += np.add.reduceat(np.einsum("bj,bjd,bje->bde", h, design, design), starts)
    return grad, hess, eta


def _design(rows: Rows, weights: dict[int, np.ndarray], sl: slice, world: World) -> np.ndarray:
    """(b, 4, 7 + K) derivative of each observation's logit (OBSERVED) in its user's propensities and taste;
    ``weights``: each term's (n, 4) weights in the observations' logits (``Rows.weights``)."""
    creative = rows.creative[sl]
    k = world.params.latent_dim
    design = np.zeros((len(creative), len(OBSERVED), _P + k))
    design[:, :, 0] = weights[USER_BASE][sl]
    channel = weights[CHANNEL][sl]
    ads = creative >= 0
    design[~ads, :, 1] = channel[~ads]
    fmt = world.campaigns.creative_format[creative[ads]].astype(np.int64)
    design[np.flatnonzero(ads), :, 2 + fmt] = channel[ads]
    design[:, OBSERVED.index("like"), 5] = 1.0
    design[:, OBSERVED.index("follow"), 6] = 1.0
    v = world.shows.taste[rows.show[sl]] / np.sqrt(k)
    design[:, :, _P:] = weights[AFFINITY][sl][:, :, None] * v[:, None, :]
    return design


@dataclass(frozen=True)
class _History:
    """What the histories say of taste: the established shows and their log-popularity weight, each user's history
    length, and the flat (user, show, followed) of every history entry."""

    shows: np.ndarray
    log_pop: np.ndarray
    lengths: np.ndarray
    user: np.ndarray
    show: np.ndarray
    followed: np.ndarray

    @classmethod
    def of(cls, world: World) -> _History:
        users, params = world.users, world.params
        established = np.flatnonzero(world.shows.launch_day < 0)
        popularity = streams_30d(world.shows, params, established, np.zeros_like(established))
        lengths = np.diff(users.history_offsets)
        user = np.repeat(np.arange(world.n_users), lengths)
        show = users.history.astype(np.int64)
        follower = np.repeat(np.arange(world.n_users), np.diff(users.followed_offsets))
        # a (user, show) pair as one key: which history entries the user also follows
        followed = np.isin(user * world.n_shows + show, follower * world.n_shows + users.followed)
        return cls(established, params.history_popularity_exponent * np.log1p(popularity), lengths, user, show,
                   followed)

    def add_terms(self, world: World, taste: np.ndarray, grad: np.ndarray, hess: np.ndarray) -> None:
        """Add the histories' and follows' log-likelihood gradient and negative Hessian in each user's taste."""
        params = world.params
        k, w = params.latent_dim, params.history_affinity_weight
        v = world.shows.taste / np.sqrt(k)
        t = slice(_P, _P + k)
        if len(self.show):  # the history draws' numerator and the follows
            x = v[self.show]
            grad[:, t] += w * np.stack([np.bincount(self.user, x[:, j], minlength=world.n_users) for j in range(k)], 1)
            a = np.einsum("ij,ij->i", taste[self.user], x)
            s = 1.0 / (1.0 + np.exp(-(params.history_follow_intercept + params.history_follow_slope * a)))
            c = params.history_follow_slope
            starts = np.flatnonzero(np.r_[True, self.user[1:] != self.user[:-1]])
            owners = self.user[starts]
            grad[owners, t] += c * np.add.reduceat((self.followed - s)[:, None] * x, starts)
            hess[owners, t, t] += c * c * np.add.reduceat(np.einsum("i,ij,ik->ijk", s * (1 - s), x, x), starts)
        vs = v[self.shows]  # the softmax over the established shows, in blocks of users
        outer = np.einsum("sj,sk->sjk", vs, vs).reshape(len(vs), k * k)
        for lo in range(0, world.n_users, _USER_BLOCK):
            hi = min(lo + _USER_BLOCK, world.n_users)
            z = w * (taste[lo:hi] @ vs.T) + self.log_pop
            prob = np.exp(z - z.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
            mean_v, mean_vv = prob @ vs, (prob @ outer).reshape(hi - lo, k, k)
            n = self.lengths[lo:hi, None]
            grad[lo:hi, t] -= w * n * mean_v
            hess[lo:hi, t, t] += w * w * n[:, :, None] * (mean_vv - np.einsum("ij,ik->ijk", mean_v, mean_v))
