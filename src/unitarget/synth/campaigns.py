"""Ad campaigns with their creatives, and promotion campaigns: first-class, index-addressed.

Campaign ``c`` advertises show ``ad_show[c]`` on days ``ad_start[c] <= day < ad_end[c]``; its
creatives are ``creative_offsets[c]:creative_offsets[c+1]``, each with a format and a quality.
A new show gets a launch promotion from its launch day and its first ad campaign only
``U{ad_delay_days}`` days later: new shows are promoted before they are advertised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitarget.synth import vocab
from unitarget.synth.params import WorldParams

#: ``first_ad_day`` of a show that never runs an ad campaign.
NEVER: int = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Campaigns:
    """Ad campaigns with their creatives (CSR by campaign) and promotion campaigns: the show each advertises, its flight
    [start, end) in days and its budget weight."""

    ad_show: np.ndarray  # (n_ad_campaigns,) int32 advertised show
    ad_start: np.ndarray  # int32 first day (inclusive)
    ad_end: np.ndarray  # int32 last day (exclusive)
    ad_budget: np.ndarray  # float64 relative impression weight
    creative_offsets: np.ndarray  # (n_ad_campaigns + 1,) int64 CSR into the creative arrays
    creative_format: np.ndarray  # (n_creatives,) int8 index into vocab.FORMATS
    creative_quality: np.ndarray  # (n_creatives,) float64 logit effect
    promo_show: np.ndarray  # (n_promo_campaigns,) int32 promoted show
    promo_start: np.ndarray  # int32
    promo_end: np.ndarray  # int32 (exclusive)
    promo_budget: np.ndarray  # float64 relative impression weight (launch boost included)

    @property
    def n_ad_campaigns(self) -> int:
        """Number of ad campaigns."""
        return len(self.ad_show)

    @property
    def n_creatives(self) -> int:
        """Number of creatives over all ad campaigns."""
        return len(self.creative_format)

    @property
    def n_promo_campaigns(self) -> int:
        """Number of promotion campaigns."""
        return len(self.promo_show)

    @property
    def creative_campaign(self) -> np.ndarray:
        """(n_creatives,) int32 campaign of each creative."""
        counts = np.diff(self.creative_offsets)
        return np.repeat(np.arange(self.n_ad_campaigns, dtype=np.int32), counts)

    @property
    def creative_show(self) -> np.ndarray:
        """(n_creatives,) int32 show each creative advertises."""
        return self.ad_show[self.creative_campaign]

    def ad_active(self, day: int) -> np.ndarray:
        """Indices of ad campaigns running on ``day``."""
        return np.flatnonzero((self.ad_start <= day) & (day < self.ad_end))

    def promo_active(self, day: int) -> np.ndarray:
        """Indices of promotion campaigns running on ``day``."""
        return np.flatnonzero((self.promo_start <= day) & (day < self.promo_end))

    def first_ad_day(self, n_shows: int) -> np.ndarray:
        """(n_shows,) int32 first day any ad campaign of the show runs; :data:`NEVER` if none."""
        first = np.full(n_shows, NEVER, dtype=np.int64)
        np.minimum.at(first, self.ad_show, self.ad_start)
        return first.astype(np.int32)

    def first_promo_day(self, n_shows: int) -> np.ndarray:
        """(n_shows,) int32 first day any promotion campaign of the show runs; :data:`NEVER` if none."""
        first = np.full(n_shows, NEVER, dtype=np.int64)
        np.minimum.at(first, self.promo_show, self.promo_start)
        return first.astype(np.int32)


def generate_campaigns(params: WorldParams, launch_day: np.ndarray, rng: np.random.Generator) -> Campaigns:
    """Draw ad campaigns with 1..max_creatives creatives each (formats by ``FORMAT_SHARES``, quality effects) and
    promotion campaigns; log-normal budgets, boosted for the promotions of new shows."""
    is_new = launch_day >= 0
    ad_show, ad_start, ad_end = _ad_campaigns(params, launch_day, is_new, rng)
    n_ad = len(ad_show)
    n_creatives = rng.integers(1, params.max_creatives + 1, size=n_ad)
    offsets = np.zeros(n_ad + 1, dtype=np.int64)
    np.cumsum(n_creatives, out=offsets[1:])
    total = int(offsets[-1])
    promo_show, promo_start, promo_end = _promo_campaigns(params, launch_day, is_new, rng)
    format_shares = vocab.shares(vocab.FORMAT_SHARES)
    promo_boost = np.where(is_new[promo_show], params.new_show_promo_boost, 1.0)
    return Campaigns(
        ad_show=ad_show,
        ad_start=ad_start,
        ad_end=ad_end,
        ad_budget=rng.lognormal(0.0, params.campaign_budget_sd, size=n_ad),
        creative_offsets=offsets,
        creative_format=rng.choice(len(vocab.FORMATS), size=total, p=format_shares).astype(np.int8),
        creative_quality=rng.normal(0.0, params.labels.creative_quality_sd, size=total),
        promo_show=promo_show,
        promo_start=promo_start,
        promo_end=promo_end,
        promo_budget=promo_boost * rng.lognormal(0.0, params.campaign_budget_sd, size=len(promo_show)),
    )


def _ad_campaigns(
    params: WorldParams, launch_day: np.ndarray, is_new: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U{1..max_campaigns} campaigns per advertised show (every new show, a fraction of the rest).

    Established shows: start U{-n_days/2 .. n_days-7}. New shows: the first campaign starts at
    launch + U{ad_delay_days}, later ones up to 21 days after it. Lengths are U{14 .. n_days}.
    """
    n = len(launch_day)
    advertised = is_new | (rng.random(n) < params.advertised_fraction)
    per_show = np.where(advertised, rng.integers(1, params.max_campaigns + 1, size=n), 0)
    show = np.repeat(np.arange(n, dtype=np.int32), per_show)
    first_of_show = np.r_[True, show[1:] != show[:-1]] if len(show) else np.zeros(0, dtype=bool)
    lo, hi = params.ad_delay_days
    first_start = launch_day + rng.integers(lo, hi + 1, size=n)
    new_start = first_start[show] + np.where(first_of_show, 0, rng.integers(0, 22, size=len(show)))
    old_start = rng.integers(-(params.n_days // 2), max(params.n_days - 7, 1), size=len(show))
    start = np.where(is_new[show], new_start, old_start).astype(np.int32)
    length = rng.integers(14, max(params.n_days, 14) + 1, size=len(show))
    return show, start, (start + length).astype(np.int32)


def _promo_campaigns(
    params: WorldParams, launch_day: np.ndarray, is_new: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One campaign per promoted show: a launch promotion of U{promo_days} days from launch day
    for every new show; for a fraction of established shows a window like an ad campaign's."""
    n = len(launch_day)
    promoted = is_new | (rng.random(n) < params.promoted_fraction)
    show = np.flatnonzero(promoted).astype(np.int32)
    lo, hi = params.promo_days
    new_length = rng.integers(lo, hi + 1, size=len(show))
    old_start = rng.integers(-(params.n_days // 2), max(params.n_days - 7, 1), size=len(show))
    old_length = rng.integers(14, max(params.n_days, 14) + 1, size=len(show))
    start = np.where(is_new[show], launch_day[show], old_start).astype(np.int32)
    end = start + np.where(is_new[show], new_length, old_length)
    return show, start, end.astype(np.int32)
