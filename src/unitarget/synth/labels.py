"""The outcome model: a click -> stream -> (like, follow) chain with closed-form marginals.

For a placement x (user, show, source, creative, context) the world defines

    P(click)                = sigmoid(b_c[s] + w_c . T(x) + format_click[f])   (format term: ads only)
    P(stream | click)       = sigmoid(b_sc[s] + w_sc . T(x))
    P(stream | no click)    = sigmoid(b_sn[s] + w_sn . T(x))
    P(like | stream)        = sigmoid(b_l[s] + w_l . T(x) + like_u)
    P(like | no stream)     = sigmoid(b_l[s] + w_l . T(x) + like_u + no_stream_offset)
    P(follow | ...)         likewise with b_f, w_f, follow_u

with T(x) = (affinity, user base, show quality, social proof, context, channel) from
:func:`shared_terms`. The marginals the log stores as ``true_<label>`` follow exactly:

    P(stream) = P(c) P(s|c) + (1 - P(c)) P(s|no c),   P(like) = P(s) P(l|s) + (1 - P(s)) P(l|no s).

Like is not observable on audio ads (no like button): its marginal is NaN there.

This module is the one owner of the outcome model: ``World.chain``, ``World.marginals`` and
``World.true_probabilities`` delegate here. It reads a world through :class:`LatentWorld` rather
than importing ``World``, so that ``world`` depends on ``labels`` and not the other way round too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from unitarget.synth import vocab
from unitarget.synth.campaigns import Campaigns
from unitarget.synth.params import WorldParams
from unitarget.synth.placements import Placements
from unitarget.synth.population import Shows, Users, streams_30d

_CHUNK = 262_144  # rows per block in marginals: bounds temporaries to ~100 MB


class LatentWorld(Protocol):
    """What the outcome model reads of a world; :class:`unitarget.synth.world.World` is one."""

    @property
    def params(self) -> WorldParams:
        """The world's parameters, the label model included."""
        ...

    @property
    def users(self) -> Users:
        """Per-user latent arrays (taste, propensities, histories)."""
        ...

    @property
    def shows(self) -> Shows:
        """Per-show latent arrays (taste, quality, streams, launch day)."""
        ...

    @property
    def campaigns(self) -> Campaigns:
        """Ad and promotion campaigns with their creatives."""
        ...

    def affinity(self, user: np.ndarray, show: np.ndarray) -> np.ndarray:
        """(n,) latent user-show affinity u · v / √K of index pairs, shared by every label."""
        ...


@dataclass(frozen=True)
class Chain:
    """Conditional probabilities of the label chain, one array of length n each."""

    click: np.ndarray
    stream_click: np.ndarray
    stream_no_click: np.ndarray
    like_stream: np.ndarray
    like_no_stream: np.ndarray
    follow_stream: np.ndarray
    follow_no_stream: np.ndarray
    like_observed: np.ndarray  # bool: False on audio ads

    def marginals(self) -> dict[str, np.ndarray]:
        """Closed-form P(stream), P(click), P(like), P(follow) per row by summing over the chain's branches; like is NaN
        where it cannot be observed (audio ads)."""
        stream = self.click * self.stream_click + (1 - self.click) * self.stream_no_click
        like = stream * self.like_stream + (1 - stream) * self.like_no_stream
        follow = stream * self.follow_stream + (1 - stream) * self.follow_no_stream
        return {
            "stream": stream,
            "click": self.click.copy(),
            "like": np.where(self.like_observed, like, np.nan),
            "follow": follow,
        }

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw labels down the chain: int8 arrays, -1 where the label is not observed."""
        u = rng.random((4, len(self.click)))
        click = u[0] < self.click
        stream = u[1] < np.where(click, self.stream_click, self.stream_no_click)
        like = u[2] < np.where(stream, self.like_stream, self.like_no_stream)
        follow = u[3] < np.where(stream, self.follow_stream, self.follow_no_stream)
        return {
            "stream": stream.astype(np.int8),
            "click": click.astype(np.int8),
            "like": np.where(self.like_observed, like, -1).astype(np.int8),
            "follow": follow.astype(np.int8),
        }


def marginals(world: LatentWorld, p: Placements) -> dict[str, np.ndarray]:
    """``Chain.marginals`` of every placement, computed in blocks of rows to bound memory."""
    parts = [chain(world, p.slice(lo, lo + _CHUNK)).marginals() for lo in range(0, max(len(p), 1), _CHUNK)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def chain(world: LatentWorld, p: Placements) -> Chain:
    """The seven conditional probabilities of the module docstring for each placement."""
    lm = world.params.labels
    terms = shared_terms(world, p)  # (n, 6)
    src = p.source
    is_ad = src == vocab.SOURCE_ADS
    fmt = ad_format(world, p)
    format_click = np.where(is_ad, np.asarray(lm.format_click_effect)[fmt], 0.0)
    like_own = world.users.like_propensity[p.user]
    follow_own = world.users.follow_propensity[p.user]

    def prob(intercept: tuple[float, ...], weights: tuple[float, ...], own: np.ndarray | float) -> np.ndarray:
        logit = np.asarray(intercept)[src] + terms @ np.asarray(weights) + own
        return _sigmoid(logit)

    return Chain(
        click=prob(lm.click_intercept, lm.click_weights, format_click),
        stream_click=prob(lm.stream_click_intercept, lm.stream_click_weights, 0.0),
        stream_no_click=prob(lm.stream_no_click_intercept, lm.stream_no_click_weights, 0.0),
        like_stream=prob(lm.like_intercept, lm.like_weights, like_own),
        like_no_stream=prob(lm.like_intercept, lm.like_weights, like_own + lm.no_stream_offset),
        follow_stream=prob(lm.follow_intercept, lm.follow_weights, follow_own),
        follow_no_stream=prob(lm.follow_intercept, lm.follow_weights, follow_own + lm.no_stream_offset),
        like_observed=~(is_ad & (fmt == vocab.AUDIO)),
    )


def shared_terms(world: LatentWorld, p: Placements) -> np.ndarray:
    """(n, 6) float64: the terms of params.TERMS for each placement.

    affinity      u_user . v_show / sqrt(K)
    user_base     the user's general engagement
    show_quality  show quality + its publisher's quality
    social_proof  (log10(1 + streams_30d(show, day)) - mean) / sd, centred on the popularity prior
    context       device effect + a cos(2 pi (hour - peak) / 24) + weekend effect
    channel       ads: creative quality + user's propensity for its format + format + slot + surface;
                  promotions: user's promotion propensity + layout + slot (position) + surface
    """
    params, users, shows, lm = world.params, world.users, world.shows, world.params.labels
    affinity = world.affinity(p.user, p.show)
    quality = shows.quality[p.show] + shows.publisher_quality[shows.publisher[p.show]]
    log_streams = np.log10(1.0 + streams_30d(shows, params, p.show, p.day))
    social = (log_streams - params.log10_streams_mean) / params.log10_streams_sd
    weekday = (dt.date.fromisoformat(params.start).weekday() + p.day) % 7
    context = (
        np.asarray(lm.device_effect)[p.device]
        + lm.hour_amplitude * np.cos(2 * np.pi * (p.hour - lm.hour_peak) / 24)
        + lm.weekend_effect * (weekday >= 5)
    )
    return np.stack(
        [affinity, users.base[p.user], quality, social, context, _channel(world, p)], axis=1
    )


def _channel(world: LatentWorld, p: Placements) -> np.ndarray:
    lm, users = world.params.labels, world.users
    is_ad = p.source == vocab.SOURCE_ADS
    fmt = ad_format(world, p)
    ad = (
        _take(world.campaigns.creative_quality, p.creative, 0.0)
        + users.format_propensity[p.user, fmt]
        + np.asarray(lm.format_effect)[fmt]
    )
    promo = users.promo_propensity[p.user] + np.asarray(lm.layout_effect)[np.maximum(p.layout, 0)]
    shared = np.asarray(lm.slot_effect)[p.slot] + np.asarray(lm.surface_effect)[p.surface]
    return np.where(is_ad, ad, promo) + shared


def ad_format(world: LatentWorld, p: Placements) -> np.ndarray:
    """Format index of each placement's creative (0 where there is none, i.e. promotions)."""
    return _take(world.campaigns.creative_format, p.creative, 0).astype(np.int64)


def _take(values: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """``values[index]`` with ``fill`` where ``index < 0``."""
    out = np.full(len(index), fill, dtype=values.dtype)
    present = index >= 0
    out[present] = values[index[present]]
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
