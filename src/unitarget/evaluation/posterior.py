"""The posterior mode of a synthetic world's show effects given logged labels: the arithmetic of the
informed oracle (``evaluation.informed``, whose docstring states the model and its approximations).

Parameters, per world: each show's own quality q_s and taste vector v_s, each publisher's quality
b_p, each creative's quality c_r. Every one enters the chain's conditional logits linearly, so the
log posterior is concave. A sweep takes

1. one joint Newton step per show in (q_s, v_s, c_r for the show's creatives), publishers fixed: a
   system of K + 1 + R_s unknowns. Quality is the show's intercept, taste its slopes on the user's
   taste and a creative's quality an intercept on the show's ad rows, so stepped one at a time they
   would zig-zag along their ridges for many sweeps;
2. each publisher's exact conditional mode given its shows' total quality Q_s = b_p + q_s
   (Gaussian, conjugate: the likelihood depends on Q_s only). Holding Q_s fixed rather than q_s
   (hierarchical centering) avoids the same slow zig-zag between b_p and the q_s of its shows.

Sweeps stop once no training row's logit moves by more than ``tol`` from one sweep to the next.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from unitarget.synth import World, labels, vocab
from unitarget.synth.params import TERMS
from unitarget.synth.placements import Placements

AFFINITY, QUALITY, CHANNEL = (TERMS.index(t) for t in ("affinity", "show_quality", "channel"))
#: The logistic observations of one row, down the chain (stream given the click branch, like and
#: follow given the stream branch).
OBSERVED = ("click", "stream", "like", "follow")
_BLOCK = 65_536  # rows per block of the chain and of the affinity


@dataclass(frozen=True)
class Effects:
    """The effects the informed oracle estimates (logit scale), one entry per entity of the world."""

    quality: np.ndarray  # (n_shows,) the show's own quality q_s
    publisher_quality: np.ndarray  # (n_publishers,) b_p
    creative_quality: np.ndarray  # (n_creatives,) c_r
    taste: np.ndarray  # (n_shows, K) taste vectors v_s = m_s + r_s

    def applied_to(self, world: World) -> World:
        """``world`` with these effects in place of its own."""
        shows = dataclasses.replace(world.shows, quality=self.quality, publisher_quality=self.publisher_quality,
                                    taste=self.taste)
        campaigns = dataclasses.replace(world.campaigns, creative_quality=self.creative_quality)
        return World(world.params, world.users, shows, campaigns)


@dataclass(frozen=True)
class Prior:
    """Gaussian priors of the effects: their means, and one variance per effect group."""

    mean: Effects
    quality_var: float
    publisher_var: float
    creative_var: float
    taste_var: float


def prior_of(world: World) -> Prior:
    """The priors of the module docstring, fitted on the world's truth over all of its shows."""
    shows, lm = world.shows, world.params.labels
    design = np.stack([np.ones(world.n_shows), np.log10(1.0 + shows.base_streams), world.is_new_show], axis=1)
    coef, *_ = np.linalg.lstsq(design, shows.quality, rcond=None)
    quality = design @ coef
    content = _content_taste(world)  # (n_shows, K)
    beta = float((shows.taste * content).sum() / max((content**2).sum(), 1e-12))
    mean = Effects(quality, np.zeros_like(shows.publisher_quality),
                   np.zeros_like(world.campaigns.creative_quality), beta * content)
    return Prior(mean, quality_var=max(float(np.mean((shows.quality - quality) ** 2)), 1e-6),
                 publisher_var=max(lm.publisher_quality_sd**2, 1e-6),
                 creative_var=max(lm.creative_quality_sd**2, 1e-6),
                 taste_var=max(float(np.mean((shows.taste - mean.taste) ** 2)), 1e-6))


def _content_taste(world: World) -> np.ndarray:
    """(n_shows, K) √g G_genre + √t T_topics: the part of a show's taste its content gives
    (``population.generate_shows`` before its final rescaling, which β absorbs)."""
    shows, params = world.shows, world.params
    counts = np.diff(shows.topic_offsets)
    topic_sum = np.zeros((world.n_shows, params.latent_dim))
    np.add.at(topic_sum, np.repeat(np.arange(world.n_shows), counts), shows.topic_taste[shows.topics])
    topic_mean = topic_sum / np.sqrt(np.maximum(counts, 1))[:, None]
    return (np.sqrt(params.genre_taste_share) * shows.genre_taste[shows.genre]
            + np.sqrt(params.topic_taste_share) * topic_mean)


@dataclass(frozen=True)
class Rows:
    """The training rows as logistic observations, sorted by show (so that a show's rows are one
    slice): each row's four chain logits at the prior mean, its labels, which of them are observed,
    and the entities whose effects move those logits."""

    base: np.ndarray  # (n, 4) logits of OBSERVED at the prior mean
    y: np.ndarray  # (n, 4) 1/0 (0 where not observed)
    observed: np.ndarray  # (n, 4) bool
    clicked: np.ndarray  # (n,) bool: which stream conditional the row's stream label is drawn from
    user: np.ndarray
    show: np.ndarray
    publisher: np.ndarray
    creative: np.ndarray  # -1 on promotions
    x: np.ndarray  # (n, K) u_user / √K: the derivative of the affinity in the show's taste

    def weights(self, world: World, term: int) -> np.ndarray:
        """(n, 4) weight of ``term`` in each observation's logit (the stream weight by click branch)."""
        lm = world.params.labels
        stream = np.where(self.clicked, lm.stream_click_weights[term], lm.stream_no_click_weights[term])
        n = len(self.clicked)
        return np.stack([np.full(n, lm.click_weights[term]), stream, np.full(n, lm.like_weights[term]),
                         np.full(n, lm.follow_weights[term])], axis=1)


def rows_of(prior_world: World, p: Placements, observed_labels: dict[str, np.ndarray]) -> Rows:
    """The placements ``p`` as ``Rows``, their logits computed in ``prior_world`` (the start of a fit: the shows' fit
    and the users' (``user_posterior``) both step from there)."""
    order = np.argsort(p.show, kind="stable")
    p = Placements(**{f.name: getattr(p, f.name)[order] for f in dataclasses.fields(p)})
    y = np.stack([observed_labels[name][order] for name in OBSERVED], axis=1)  # (n, 4) with NaN
    observed = ~np.isnan(y)
    observed[:, 1] &= observed[:, 0]  # stream's branch needs the click
    observed[:, 2:] &= observed[:, [1]]  # like's and follow's need the stream
    clicked, streamed = y[:, 0] == 1, y[:, 1] == 1
    parts = []
    for lo in range(0, len(p), _BLOCK):
        c, sl = labels.chain(prior_world, p.slice(lo, lo + _BLOCK)), slice(lo, lo + _BLOCK)
        parts.append(np.stack([
            c.click, np.where(clicked[sl], c.stream_click, c.stream_no_click),
            np.where(streamed[sl], c.like_stream, c.like_no_stream),
            np.where(streamed[sl], c.follow_stream, c.follow_no_stream),
        ], axis=1))
    q = np.concatenate(parts)
    return Rows(base=np.log(q) - np.log1p(-q), y=np.where(observed, y, 0.0), observed=observed, clicked=clicked,
                 user=p.user, show=p.show, publisher=prior_world.shows.publisher[p.show].astype(np.int64),
                 creative=np.where(p.source == vocab.SOURCE_ADS, p.creative, -1),
                 x=prior_world.users.taste[p.user] / np.sqrt(prior_world.params.latent_dim))


@dataclass(frozen=True)
class _Show:
    """One show's training rows; its Newton block's unknowns are (q_s, v_s, c_r for ``creatives``)."""

    show: int
    rows: slice  # its rows among the training rows (sorted by show)
    creatives: np.ndarray  # (R,) the show's creatives among them
    ad_rows: np.ndarray  # positions in ``rows`` of the ad rows
    local: np.ndarray  # each ad row's creative, as an index into ``creatives``


def _shows(rows: Rows) -> list[_Show]:
    """The shows with training rows, each with its rows and creatives."""
    starts = np.flatnonzero(np.r_[True, rows.show[1:] != rows.show[:-1]])
    shows = []
    for lo, hi in zip(starts.tolist(), np.r_[starts[1:], len(rows.show)].tolist()):
        creative = rows.creative[lo:hi]
        ad_rows = np.flatnonzero(creative >= 0)
        creatives, local = np.unique(creative[ad_rows], return_inverse=True)
        shows.append(_Show(int(rows.show[lo]), slice(lo, hi), creatives, ad_rows, local.ravel()))
    return shows


def fit_effects(world: World, p: Placements, observed_labels: dict[str, np.ndarray], *, prior: Prior | None = None,
                sweeps: int = 50, tol: float = 5e-3) -> Effects:
    """The posterior mode of the effects given the labels of the placements ``p`` (module
    docstring), from the prior mean; the prior mean itself when ``p`` is empty.

    Args:
        observed_labels: label -> (n,) 1/0, NaN where not observed (``world_rows.label_arrays``).
        prior: the priors (default ``prior_of(world)``).
        sweeps: at most this many sweeps.
        tol: stop once no training logit moves by more than this in a sweep.
    """
    prior = prior or prior_of(world)
    if len(p) == 0:
        return prior.mean
    rows = rows_of(prior.mean.applied_to(world), p, observed_labels)
    weights = {term: rows.weights(world, term) for term in (AFFINITY, QUALITY, CHANNEL)}
    shows = _shows(rows)
    est, previous = prior.mean, None
    for _ in range(sweeps):
        eta = _logits(rows, world, weights, est, prior.mean)
        if previous is not None and np.abs(eta - previous).max() < tol:
            break
        previous = eta
        est = _show_step(rows, eta, weights, est, prior, shows)
        est = _publisher_step(world, est, prior, shows)
    return est


def _logits(rows: Rows, world: World, weights: dict[int, np.ndarray], est: Effects, m: Effects) -> np.ndarray:
    """(n, 4) observation logits with the effects at ``est`` (``rows.base`` holds them at ``m``)."""
    d_quality = (est.quality - m.quality)[rows.show] + (est.publisher_quality - m.publisher_quality)[rows.publisher]
    d_creative = est.creative_quality - m.creative_quality
    d_channel = np.zeros(len(rows.show))
    ads = rows.creative >= 0
    d_channel[ads] = d_creative[rows.creative[ads]]
    d_taste = est.taste - m.taste
    d_affinity = np.zeros(len(rows.show))
    for lo in range(0, len(rows.show), _BLOCK):
        sl = slice(lo, lo + _BLOCK)
        d_affinity[sl] = np.einsum("ij,ij->i", rows.x[sl], d_taste[rows.show[sl]])
    return (rows.base + weights[QUALITY] * d_quality[:, None] + weights[CHANNEL] * d_channel[:, None]
            + weights[AFFINITY] * d_affinity[:, None])


def _show_step(rows: Rows, eta: np.ndarray, weights: dict[int, np.ndarray], est: Effects, prior: Prior,
               shows: list[_Show]) -> Effects:
    """One joint Newton step of every show's (q_s, v_s, c_r), clipped to 1 logit per unknown."""
    p = 0.5 * (1.0 + np.tanh(0.5 * eta))
    r = np.where(rows.observed, rows.y - p, 0.0)  # (n, 4) d log-likelihood / d logit
    h = np.where(rows.observed, p * (1.0 - p), 0.0)  # (n, 4) − d² log-likelihood / d logit²
    w = (weights[QUALITY], weights[AFFINITY], weights[CHANNEL])
    grad = [(r * wi).sum(axis=1) for wi in w]  # per row, in the q, v (times x) and c directions
    curv = {(i, j): (h * w[i] * w[j]).sum(axis=1) for i in range(3) for j in range(i, 3)}
    quality, taste, creative = est.quality.copy(), est.taste.copy(), est.creative_quality.copy()
    k = taste.shape[1]
    for s in shows:
        b, a = _show_system(s, rows.x[s.rows], [g[s.rows] for g in grad], {key: c[s.rows] for key, c in curv.items()})
        m = prior.mean
        b[0] -= (quality[s.show] - m.quality[s.show]) / prior.quality_var
        b[1:k + 1] -= (taste[s.show] - m.taste[s.show]) / prior.taste_var
        b[k + 1:] -= (creative[s.creatives] - m.creative_quality[s.creatives]) / prior.creative_var
        a[np.diag_indices(len(b))] += np.r_[1.0 / prior.quality_var, np.full(k, 1.0 / prior.taste_var),
                                            np.full(len(s.creatives), 1.0 / prior.creative_var)]
        step = np.clip(np.linalg.solve(a, b), -1.0, 1.0)
        quality[s.show] += step[0]
        taste[s.show] += step[1:k + 1]
        creative[s.creatives] += step[k + 1:]
    return dataclasses.replace(est, quality=quality, taste=taste, creative_quality=creative)


def _show_system(s: _Show, x: np.ndarray, grad: list[np.ndarray],
                 curv: dict[tuple[int, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The log likelihood's gradient (d,) and negative Hessian (d, d) of one show's rows in its
    unknowns (q_s, v_s, c_1..c_R), d = 1 + K + R; the priors are added by the caller."""
    k, n_cr = x.shape[1], len(s.creatives)
    ad, onehot = s.ad_rows, np.eye(n_cr)[s.local]  # (m_ad, R)
    v, c = slice(1, k + 1), slice(k + 1, k + 1 + n_cr)
    b = np.concatenate([[grad[0].sum()], x.T @ grad[1], onehot.T @ grad[2][ad]])
    a = np.zeros((len(b), len(b)))
    a[0, 0] = curv[0, 0].sum()
    a[0, v] = x.T @ curv[0, 1]
    a[0, c] = onehot.T @ curv[0, 2][ad]
    a[v, v] = (x * curv[1, 1][:, None]).T @ x
    a[v, c] = (x[ad] * curv[1, 2][ad, None]).T @ onehot
    a[c, c] = np.diag(onehot.T @ curv[2, 2][ad])
    upper = np.triu_indices(len(b), 1)
    a[(upper[1], upper[0])] = a[upper]  # symmetric
    return b, a


def _publisher_step(world: World, est: Effects, prior: Prior, shows: list[_Show]) -> Effects:
    """Each publisher's exact conditional mode given its seen shows' total quality Q_s = b_p + q_s,
    Q_s held fixed: b_p = Σ_s (Q_s − μ_s) / σ_q² / (1 / σ_b² + n_p / σ_q²) over its n_p seen shows
    (the likelihood reads Q_s only; unseen shows do not constrain b_p, and keep q_s = μ_s)."""
    seen = np.array([s.show for s in shows], dtype=np.int64)
    publisher = world.shows.publisher[seen]
    total = est.quality[seen] + est.publisher_quality[publisher]
    n_pub = len(est.publisher_quality)
    excess = np.bincount(publisher, total - prior.mean.quality[seen], minlength=n_pub) / prior.quality_var
    b = excess / (1.0 / prior.publisher_var + np.bincount(publisher, minlength=n_pub) / prior.quality_var)
    quality = est.quality.copy()
    quality[seen] = total - b[publisher]
    return dataclasses.replace(est, publisher_quality=b, quality=quality)

