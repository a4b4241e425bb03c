"""User listening histories and follows: the list features that carry a listener's taste.

A user's history is a draw without replacement of ``L_u`` established shows with weight
``exp(w_a * affinity) * (1 + streams_30d at day 0) ** w_p``, taken with exponential keys
(top-L of ``log weight - log E``, E ~ Exp(1)) so that it is one vectorised pass per block of users.
Histories are a snapshot at the start of the period: shows launching during it never appear.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from unitarget.synth.params import WorldParams
from unitarget.synth.population import Shows, Users, streams_30d

_BLOCK_CELLS = 4_000_000  # users x shows per block: bounds memory to ~50 MB of float32


def with_histories(users: Users, shows: Shows, params: WorldParams, rng: np.random.Generator) -> Users:
    """``users`` with history and followed shows filled in.

    ``L_u = min(max_history, 1 + Poisson((mean_history - 1) * e^{base_u} / mean(e^{base})))``:
    more engaged listeners have longer histories. Each history show is followed with probability
    ``sigmoid(history_follow_intercept + history_follow_slope * affinity)``.
    """
    established = np.flatnonzero(shows.launch_day < 0).astype(np.int32)
    if len(established) == 0:
        empty = np.zeros(params.n_users + 1, dtype=np.int64)
        return dataclasses.replace(users, history_offsets=empty, followed_offsets=empty)
    engagement = np.exp(users.base) / np.exp(users.base).mean()
    lengths = 1 + rng.poisson((params.mean_history - 1) * engagement)
    lengths = np.minimum(lengths, min(params.max_history, len(established)))
    popularity = streams_30d(shows, params, established, np.zeros_like(established))
    log_pop = (params.history_popularity_exponent * np.log1p(popularity)).astype(np.float32)
    show_taste = (shows.taste[established] / np.sqrt(params.latent_dim)).astype(np.float32)
    block = max(1, _BLOCK_CELLS // len(established))
    history, followed = [], []
    for lo in range(0, params.n_users, block):
        hi = min(lo + block, params.n_users)
        top, top_affinity = _top_by_weight(
            users.taste[lo:hi].astype(np.float32) @ show_taste.T, log_pop, lengths[lo:hi], params, rng
        )
        follow_logit = params.history_follow_intercept + params.history_follow_slope * top_affinity
        follow_p = 1 / (1 + np.exp(-follow_logit))
        history.append(established[top])
        followed.append(rng.random(top.shape) < follow_p)
    flat_history, is_followed = np.concatenate(history), np.concatenate(followed)
    row = np.repeat(np.arange(params.n_users), lengths)
    return dataclasses.replace(
        users,
        history_offsets=_offsets(lengths),
        history=flat_history,
        followed_offsets=_offsets(np.bincount(row[is_followed], minlength=params.n_users)),
        followed=flat_history[is_followed],
    )


def _top_by_weight(
    affinity: np.ndarray, log_pop: np.ndarray, lengths: np.ndarray, params: WorldParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat column indices of each row's sampled shows (row-major, best key first) and their affinities."""
    keys = params.history_affinity_weight * affinity + log_pop[None, :]
    exponential = rng.standard_exponential(affinity.shape, dtype=np.float32)
    keys -= np.log(np.maximum(exponential, np.finfo(np.float32).tiny))
    k = int(lengths.max())
    idx = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, idx, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    keep = np.arange(k)[None, :] < lengths[:, None]
    return idx[keep], np.take_along_axis(affinity, idx, axis=1)[keep]


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets

