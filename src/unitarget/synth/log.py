"""Sampling an impression log from a :class:`World`: the logging policy, then labels down the chain.

Logging policy (documented in docs/synthetic-world.md):

1. Each source gets its share of impressions (``ads_share``). A (day, campaign) pair is drawn with
   weight ``traffic[weekday] * active * budget * (1 + streams_30d(show, day)) ** popularity_exponent``:
   impressions per show grow sublinearly with popularity; launch promotions carry a boost.
2. Ads: a creative of the campaign uniformly, its format's surface, an in-stream or banner slot.
   Promotions: search or home shelf, a layout for that surface, a position slot.
3. Hour from the diurnal curve; device the user's own with ``primary_device_share``.
4. User: ``policy_candidates`` users drawn by activity, one kept with probability
   ∝ ``exp(policy_temperature * affinity)`` (Gumbel-max): a mildly affinity-aware targeting.

The log is drawn one hour of the period at a time, so that a log of any size is made in pieces
and each piece is already in time order. :func:`plan_log` fixes how many impressions of each
source fall in each hour: one multinomial draw over (day, hour) cells with probability
``P(day) * P(hour)``, the same joint law as drawing (day, campaign) and hour for every impression
(step 1 and 3). Given its counts, hour ``h`` draws its campaigns (conditional on the day), every
other step and its labels from its own stream, child ``h`` of the log's ``SeedSequence``: the log
is a function of the seed alone, whichever hours are drawn together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitarget.synth import vocab
from unitarget.synth.params import WorldParams
from unitarget.synth.placements import Placements, SampledLog
from unitarget.synth.world import World

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_CHUNK = 262_144
_LOG_STREAM = 1  # SeedSequence entropy of the log, apart from the world's streams


@dataclass(frozen=True)
class LogPlan:
    """What every hour of the log shares: its impression counts and the weights it draws from.

    Hour ``h`` of the period is day ``h // 24``, hour of day ``h % 24``.
    """

    counts: np.ndarray  # (n_days * 24, 2) int64 impressions per hour of the period, (ads, promotions)
    ad_campaign_cdf: np.ndarray  # (n_days, n_ad_campaigns) cumulative campaign weights of each day, last 1
    promo_campaign_cdf: np.ndarray  # (n_days, n_promo_campaigns) likewise for promotions
    activity_cdf: np.ndarray  # (n_users,) cumulative user activity: the policy's candidate draw

    @property
    def per_hour(self) -> np.ndarray:
        """(n_days * 24,) int64 impressions in each hour of the period, both sources."""
        return self.counts.sum(axis=1)


def plan_log(world: World) -> LogPlan:
    """Impressions per (hour, source) from the stream (params.seed, _LOG_STREAM); campaign weights per day."""
    params, c = world.params, world.campaigns
    rng = np.random.default_rng(_log_seed(params))
    n_ads = round(params.ads_share * params.n_impressions)
    counts = []
    cdfs = []
    for n, start, end, budget, show in (
        (n_ads, c.ad_start, c.ad_end, c.ad_budget, c.ad_show),
        (params.n_impressions - n_ads, c.promo_start, c.promo_end, c.promo_budget, c.promo_show),
    ):
        weights = _day_campaign_weights(world, start, end, budget, show)
        by_day = weights.sum(axis=1)
        cell = by_day[:, None] * vocab.shares(vocab.HOUR_TRAFFIC)[None, :]
        counts.append(rng.multinomial(n, (cell / cell.sum()).ravel()))
        cumulative = np.cumsum(weights, axis=1)
        cdfs.append(cumulative / np.where(by_day > 0, by_day, 1.0)[:, None])
    return LogPlan(
        counts=np.stack(counts, axis=1),
        ad_campaign_cdf=cdfs[0],
        promo_campaign_cdf=cdfs[1],
        activity_cdf=np.cumsum(world.users.activity),
    )


def sample_log(world: World) -> SampledLog:
    """The whole log's placements, campaigns, timestamps, drawn labels and true probabilities, sorted by ts."""
    plan = plan_log(world)
    return sample_hours(world, plan, 0, len(plan.counts))


def sample_hours(world: World, plan: LogPlan, lo: int, hi: int) -> SampledLog:
    """Hours ``lo:hi`` of the period, sorted by ts: the same rows whichever other hours are drawn with them."""
    return SampledLog.concat([_sample_hour(world, plan, hour) for hour in range(lo, hi)])


def _sample_hour(world: World, plan: LogPlan, hour: int) -> SampledLog:
    """One hour's impressions from its own stream: slots, ts within the hour, users, devices, labels."""
    params = world.params
    rng = np.random.default_rng(np.random.SeedSequence(_log_seed(params), spawn_key=(hour,)))
    day, hour_of_day = divmod(hour, 24)
    n_ads, n_promos = (int(n) for n in plan.counts[hour])
    ads = _sample_ads(world, plan.ad_campaign_cdf[day], n_ads, rng)
    promos = _sample_promotions(world, plan.promo_campaign_cdf[day], n_promos, rng)
    source = np.r_[np.full(n_ads, vocab.SOURCE_ADS), np.full(n_promos, vocab.SOURCE_PROMOTIONS)]
    n = n_ads + n_promos
    ts_us = _start_us(params) + day * _DAY_US + hour_of_day * _HOUR_US + rng.integers(0, _HOUR_US, size=n)
    order = np.argsort(ts_us, kind="stable")
    slots = {key: np.concatenate([ads[key], promos[key]])[order] for key in ads}
    user = _policy_users(world, plan.activity_cdf, slots["show"], rng)
    placements = Placements(
        user=user, show=slots["show"], source=source[order], creative=slots["creative"],
        surface=slots["surface"], device=_devices(world, user, rng), slot=slots["slot"],
        layout=slots["layout"], hour=np.full(n, hour_of_day), day=np.full(n, day),
    )  # fmt: skip
    labels, truth = _draw_labels(world, placements, rng)
    return SampledLog(placements, slots["campaign"], ts_us[order], labels, truth)


def _sample_ads(world: World, campaign_cdf: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = world.campaigns
    campaign = _categorical(campaign_cdf, n, rng)
    n_creatives = np.diff(c.creative_offsets)[campaign]
    creative = c.creative_offsets[campaign] + (rng.random(n) * n_creatives).astype(np.int64)
    fmt = c.creative_format[creative]
    in_stream = rng.choice(vocab.IN_STREAM_SLOTS, size=n, p=vocab.shares(vocab.IN_STREAM_SLOT_SHARES))
    banner = rng.choice(vocab.BANNER_SLOTS, size=n, p=vocab.shares(vocab.BANNER_SLOT_SHARES))
    return {
        "show": c.ad_show[campaign].astype(np.int64),
        "campaign": campaign,
        "creative": creative,
        "surface": vocab.AD_SURFACE_OF_FORMAT[fmt].astype(np.int64),
        "slot": np.where(fmt == vocab.DISPLAY, banner, in_stream).astype(np.int64),
        "layout": np.full(n, -1, dtype=np.int64),
    }


def _sample_promotions(
    world: World, campaign_cdf: np.ndarray, n: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    c = world.campaigns
    campaign = _categorical(campaign_cdf, n, rng)
    search = rng.random(n) < world.params.search_share
    shelf_layout = rng.choice(vocab.SHELF_LAYOUTS, size=n, p=vocab.shares(vocab.SHELF_LAYOUT_SHARES))
    return {
        "show": c.promo_show[campaign].astype(np.int64),
        "campaign": campaign + c.n_ad_campaigns,
        "creative": np.full(n, -1, dtype=np.int64),
        "surface": np.where(search, vocab.SEARCH, vocab.HOME_SHELF).astype(np.int64),
        "slot": rng.choice(vocab.PROMO_SLOTS, size=n, p=vocab.shares(vocab.PROMO_SLOT_SHARES)).astype(np.int64),
        "layout": np.where(search, vocab.LIST_ROW, shelf_layout).astype(np.int64),
    }


def _day_campaign_weights(
    world: World, start: np.ndarray, end: np.ndarray, budget: np.ndarray, show: np.ndarray
) -> np.ndarray:
    """(n_days, n_campaigns) weight traffic[weekday] * [active] * budget * (1 + streams) ** gamma."""
    params = world.params
    days = np.arange(params.n_days)[:, None]  # (D, 1) against campaigns (1, C)
    weekday = (params.start_datetime.weekday() + days) % 7
    active = (start[None, :] <= days) & (days < end[None, :])
    popularity = world.streams_30d(show[None, :], days)
    weights = np.asarray(vocab.WEEKDAY_TRAFFIC)[weekday] * active * budget
    weights = weights * (1.0 + popularity) ** params.popularity_exponent
    if weights.sum() <= 0:
        raise ValueError("no campaign of a source with impressions runs during the period; enlarge the world")
    return weights


def _categorical(cdf: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices drawn with the probabilities whose cumulative sum is ``cdf`` (last value 1), as ``rng.choice``."""
    return np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)


def _policy_users(world: World, cdf: np.ndarray, show: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each impression, the kept user among activity-drawn candidates (Gumbel-max on tau * affinity)."""
    params = world.params
    m, tau = params.policy_candidates, params.policy_temperature
    users = np.empty(len(show), dtype=np.int64)
    for lo in range(0, len(show), _CHUNK):
        s = show[lo : lo + _CHUNK]
        candidates = np.searchsorted(cdf, rng.random((len(s), m)) * cdf[-1], side="right")
        candidates = np.minimum(candidates, params.n_users - 1)
        affinity = world.affinity(candidates.ravel(), np.repeat(s, m)).reshape(len(s), m)
        keys = tau * affinity + rng.gumbel(size=affinity.shape)
        users[lo : lo + _CHUNK] = np.take_along_axis(candidates, keys.argmax(axis=1)[:, None], axis=1)[:, 0]
    return users


def _devices(world: World, user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    other = rng.choice(len(vocab.DEVICES), size=len(user), p=vocab.shares(vocab.DEVICE_SHARES))
    own = rng.random(len(user)) < world.params.primary_device_share
    return np.where(own, world.users.device[user], other).astype(np.int64)


def _draw_labels(
    world: World, p: Placements, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Labels sampled down the chain and the exact marginals they were drawn from, block by block."""
    labels: dict[str, list[np.ndarray]] = {}
    truth: dict[str, list[np.ndarray]] = {}
    for lo in range(0, max(len(p), 1), _CHUNK):
        block = world.chain(p.slice(lo, lo + _CHUNK))
        for name, values in block.sample(rng).items():
            labels.setdefault(name, []).append(values)
        for name, values in block.marginals().items():
            truth.setdefault(name, []).append(values)
    return (
        {k: np.concatenate(v) for k, v in labels.items()},
        {k: np.concatenate(v) for k, v in truth.items()},
    )


def _log_seed(params: WorldParams) -> list[int]:
    return [params.seed, _LOG_STREAM]


def _start_us(params: WorldParams) -> int:
    return int(params.start_datetime.timestamp()) * 1_000_000
