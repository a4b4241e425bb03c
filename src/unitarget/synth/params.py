"""Typed parameters of the synthetic world: its structure (:class:`WorldParams`) and how outcomes
respond to it (:class:`LabelModel`). docs/synthetic-world.md explains each value.

The values are plausible choices, not fitted to make any model comparison come out one way; the
only values chosen by looking at output are the label intercepts, set so that the marginal rates
land in the brief's ranges (ads stream about 1-2 %, promotions stream about 4-6 %).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from unitarget.synth import vocab

#: The shared terms of every conditional logit, in the order of the ``*_weights`` tuples below.
TERMS = ("affinity", "user_base", "show_quality", "social_proof", "context", "channel")


@dataclass(frozen=True)
class LabelModel:
    """The click -> stream -> (like, follow) chain.

    Each conditional probability is ``sigmoid(intercept[source] + weights . terms + own)``, with
    ``terms`` = (affinity, user base propensity, show + publisher quality, social proof, context
    effect, channel effect); see :data:`TERMS` and ``labels.chain``. Intercept pairs
    are (ads, promotions); effect tuples follow the vocabularies in :mod:`unitarget.synth.vocab`.
    """

    # intercepts, (ads, promotions)
    click_intercept: tuple[float, float] = (-5.4, -3.3)  # P(click)
    stream_click_intercept: tuple[float, float] = (-1.0, -0.8)  # P(stream | click)
    stream_no_click_intercept: tuple[float, float] = (-5.7, -5.3)  # P(stream | no click)
    like_intercept: tuple[float, float] = (-2.6, -2.6)  # P(like | stream)
    follow_intercept: tuple[float, float] = (-2.2, -2.2)  # P(follow | stream)
    no_stream_offset: float = -4.5  # logit shift of like / follow when the user did not stream
    # weights on TERMS for each conditional logit
    click_weights: tuple[float, ...] = (0.7, 1.0, 1.0, 0.15, 1.0, 1.0)
    stream_click_weights: tuple[float, ...] = (0.5, 0.5, 0.5, 0.15, 1.0, 0.0)
    stream_no_click_weights: tuple[float, ...] = (0.9, 1.0, 1.0, 0.15, 1.0, 0.5)
    like_weights: tuple[float, ...] = (0.4, 0.0, 0.5, 0.0, 0.0, 0.0)
    follow_weights: tuple[float, ...] = (0.6, 0.0, 0.5, 0.0, 0.0, 0.0)
    # random-effect standard deviations (logit scale)
    user_base_sd: float = 0.5  # general engagement of a listener, all labels
    user_format_sd: float = 0.4  # per (user, ad format) propensity: ad-only signal
    user_promo_sd: float = 0.4  # per-user propensity to respond to promotions: promo-only signal
    user_like_sd: float = 0.4  # per-user tendency to like
    user_follow_sd: float = 0.4  # per-user tendency to follow
    show_quality_sd: float = 0.3  # idiosyncratic show quality (not visible from content features)
    publisher_quality_sd: float = 0.3  # publisher quality, shared by the publisher's shows
    creative_quality_sd: float = 0.4  # per-creative quality: ad-only signal
    # fixed effects, aligned with the vocabularies
    format_effect: tuple[float, ...] = (0.0, 0.15, -0.2)  # audio, video, display (channel term)
    format_click_effect: tuple[float, ...] = (-0.5, 0.1, 0.0)  # extra, on click only
    surface_effect: tuple[float, ...] = (0.0, 0.5, 0.0, 0.0, 0.0)  # search promotions: intent
    slot_effect: tuple[float, ...] = (0.0, -0.15, -0.3, -0.45, 0.0, 0.1, -0.25, 0.1, -0.1)
    layout_effect: tuple[float, ...] = (0.0, 0.15, -0.15, 0.0)  # card, banner, carousel, list_row
    device_effect: tuple[float, ...] = (0.0, -0.05, -0.25, -0.35, -0.15)
    hour_amplitude: float = 0.15  # context: a * cos(2 pi (hour - peak) / 24)
    hour_peak: int = 21  # hour (UTC) of highest responsiveness
    weekend_effect: float = 0.08  # context: added on Saturday and Sunday

    def __post_init__(self) -> None:
        expected = {
            "format_effect": len(vocab.FORMATS),
            "format_click_effect": len(vocab.FORMATS),
            "surface_effect": len(vocab.SURFACES),
            "slot_effect": len(vocab.SLOTS),
            "layout_effect": len(vocab.LAYOUTS),
            "device_effect": len(vocab.DEVICES),
        }
        expected.update({f"{name}_weights": len(TERMS) for name in _CHAIN})
        for name, length in expected.items():
            if len(getattr(self, name)) != length:
                raise ValueError(f"LabelModel.{name} needs {length} values, got {getattr(self, name)}")


_CHAIN = ("click", "stream_click", "stream_no_click", "like", "follow")


@dataclass(frozen=True)
class WorldParams:
    """Structure of the synthetic world. Sizes first, then latent taste, popularity, channels,
    users and the logging policy."""

    n_users: int = 50_000
    n_shows: int = 4_000
    n_impressions: int = 2_000_000
    n_days: int = 56
    seed: int = 0
    start: str = "2026-01-05"  # first day, UTC (a Monday)
    # latent taste
    latent_dim: int = 16  # K: dimensions of user and show taste vectors
    n_topics: int = 240  # topic tags; topic k's home genre is k mod n_genres
    max_topics: int = 5  # topics per show: 1 + Poisson(1.5), capped here
    home_topic_share: float = 0.8  # chance a show's topic comes from its genre's topics
    demographic_taste_share: float = 0.25  # share of user-vector variance from country + age
    genre_taste_share: float = 0.3  # variance weight of the genre centroid in v (before rescaling)
    topic_taste_share: float = 0.3  # ... of the topic vectors (the rest is show-specific noise)
    publishers_per_show: float = 0.2  # n_publishers = this * n_shows; sizes are Zipf-like
    # popularity (base streams over 30 days, log10 scale)
    log10_streams_mean: float = 2.8  # centre of established shows' log10 30-day streams
    log10_streams_sd: float = 1.3  # spread: gives few tier-0 shows, most in tiers 2-6
    quality_popularity_corr: float = 0.4  # correlation of log popularity with show quality
    streams_drift_sd: float = 0.3  # per-show log trend of streams across the period
    new_show_fraction: float = 0.15  # shows launching during the period (cold start)
    new_show_log10_offset: float = -0.3  # new shows' eventual popularity is a little lower
    ramp_days: int = 30  # a new show's 30-day streams grow linearly to its level over this
    min_established_age: int = 30  # established shows launched at least this many days before start
    # channels and campaigns
    ads_share: float = 0.8  # share of impressions that are ads (ads : promotions = 4 : 1)
    advertised_fraction: float = 0.5  # established shows running ad campaigns
    promoted_fraction: float = 0.25  # established shows running promotion campaigns (new: all)
    ad_delay_days: tuple[int, int] = (7, 14)  # new shows' first ad campaign: launch + U{7..14}
    promo_days: tuple[int, int] = (21, 42)  # length of a new show's launch promotion
    max_campaigns: int = 3  # ad campaigns per advertised show: U{1..3}
    max_creatives: int = 4  # creatives per campaign: U{1..4}
    campaign_budget_sd: float = 0.5  # log-normal spread of campaign budgets (impression weight)
    popularity_exponent: float = 0.3  # impressions of a show ∝ (1 + streams_30d) ** this
    new_show_promo_boost: float = 4.0  # promotion weight multiplier for shows in launch promotion
    search_share: float = 0.25  # promotions shown in search (rest on the home shelf)
    # users
    activity_sd: float = 1.0  # log-normal spread of user activity (impressions per user)
    primary_device_share: float = 0.8  # impressions on the user's own device; rest any device
    mean_history: float = 10.0  # mean length of user_history_shows
    max_history: int = 30  # cap on user_history_shows
    history_affinity_weight: float = 1.5  # history draw weight: exp(this * affinity) ...
    history_popularity_exponent: float = 0.4  # ... * (1 + streams) ** this
    history_follow_intercept: float = -2.0  # P(follow a history show) = sigmoid(this + slope * affinity)
    history_follow_slope: float = 1.0
    # logging policy: mildly affinity-aware
    policy_candidates: int = 4  # users drawn by activity for each impression ...
    policy_temperature: float = 0.5  # ... one kept with probability ∝ exp(this * affinity)
    labels: LabelModel = field(default_factory=LabelModel)

    def __post_init__(self) -> None:
        positive = ("n_users", "n_shows", "n_impressions", "n_days", "latent_dim", "n_topics")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"WorldParams.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("ads_share", "new_show_fraction", "advertised_fraction", "promoted_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"WorldParams.{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 < self.ad_delay_days[0] <= self.ad_delay_days[1]:
            raise ValueError(f"WorldParams.ad_delay_days must be 0 < lo <= hi, got {self.ad_delay_days}")
        if self.genre_taste_share + self.topic_taste_share > 1.0:
            raise ValueError("WorldParams: genre_taste_share + topic_taste_share must be <= 1")
        dt.date.fromisoformat(self.start)

    @property
    def n_publishers(self) -> int:
        """round(publishers_per_show · n_shows), at least 1."""
        return max(1, round(self.publishers_per_show * self.n_shows))

    @property
    def start_datetime(self) -> dt.datetime:
        """Midnight UTC of ``start``: the beginning of day 0."""
        return dt.datetime.fromisoformat(self.start).replace(tzinfo=dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a dict (the label model nested), for ``world.json``; ``from_dict`` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldParams:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        data = dict(data)
        labels = LabelModel(**{k: _tuple(v) for k, v in data.pop("labels", {}).items()})
        return cls(**{k: _tuple(v) for k, v in data.items()}, labels=labels)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
