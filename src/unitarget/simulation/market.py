"""The simulated marketplace every arm shares: markets, priced and budgeted campaigns, opportunities.

A live budget-split test splits users by a hash of their id and gives each arm half of every
campaign's budget. A simulator can do better than a split: every arm replays *the same* stream of
ad opportunities (user, surface, slot, device, time) with its share of each budget, so arms differ
only in whom they target (a paired design). What is drawn here is drawn once, from the
simulation seed, and never depends on the arms:

- **markets**: users and campaigns are assigned to ``markets`` groups by a hash of their index
  (splitmix64, salted by the seed). A market's opportunities come from its users and can only be
  served by its campaigns, so markets are independent replications: the unit of the confidence
  intervals (metrics.py).
- **campaigns**: the world's ad campaigns running in the simulated days, each with a price per
  1,000 impressions ``cpm ~ LogNormal(ln cpm, cpm_sd)`` (the world has no prices) and a budget
  proportional to the impressions the world's own logging policy gives it over those days
  (budget weight x weekday traffic x (1 + streams_30d) ** popularity_exponent), scaled per market
  so that the full budgets would buy ``budget_to_supply`` x the market's opportunities. Each arm
  gets ``budget_share`` of it.
- **opportunities**: per day ``opportunities_per_day`` (times the weekday's traffic), users drawn
  by activity, hours by the diurnal curve, surfaces by the ad format mix, slots and devices as in
  the world's log. Sorted by time.
- **candidates**: each opportunity retrieves ``candidates`` distinct creatives at random among the
  creatives of its market's running campaigns whose format fits its surface: the retrieval stage
  that the arms' rankers then score.
- **outcome draws**: four uniforms per opportunity, shared by every arm (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitarget.config import SimulateConfig
from unitarget.errors import UnitargetError
from unitarget.synth import World, vocab

HOURS = 24
_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_SIM_STREAM = 4  # SeedSequence key: apart from the world's and the log's random streams
_USER_SALT, _CAMPAIGN_SALT = 0x5A17, 0xC0FFEE
_EXACT_SAMPLING_RATIO = 4  # pools up to this many times `candidates` are sampled by random keys


@dataclass(frozen=True)
class Opportunities:
    """The ad opportunity stream, sorted by time; all arrays have one row per opportunity."""

    user: np.ndarray  # (N,) int64 user index
    market: np.ndarray  # (N,) int64 the user's market
    day: np.ndarray  # (N,) int64 world day
    hour: np.ndarray  # (N,) int64 hour of day, UTC
    ts_us: np.ndarray  # (N,) int64 microseconds since the epoch
    surface: np.ndarray  # (N,) int64 index into vocab.SURFACES (an ad surface)
    slot: np.ndarray  # (N,) int64 index into vocab.SLOTS
    device: np.ndarray  # (N,) int64 index into vocab.DEVICES
    candidates: np.ndarray  # (N, K) int64 creative indices, -1 where the pool had fewer than K
    uniforms: np.ndarray  # (N, 4) float64 outcome draws: click, stream, like, follow
    slice_offsets: np.ndarray  # (days * 24 + 1,) rows of pacing slice s are offsets[s]:offsets[s+1]

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class SimCampaigns:
    """The world's ad campaigns as the simulator sells them: a market, a price and a budget each."""

    market: np.ndarray  # (C,) int64 market of each world ad campaign
    cpm: np.ndarray  # (C,) float64 price per 1,000 impressions
    budget: np.ndarray  # (C,) float64 money each arm may spend in the window (0: not running)
    start: np.ndarray  # (C,) int64 first day of the flight inside the window
    end: np.ndarray  # (C,) int64 end (exclusive) of the flight inside the window
    creative_campaign: np.ndarray  # (R,) int64 campaign of each creative

    @property
    def price(self) -> np.ndarray:
        """(C,) money per impression."""
        return self.cpm / 1000.0

    def __len__(self) -> int:
        return len(self.market)


@dataclass(frozen=True)
class Marketplace:
    """Markets, campaigns and the shared opportunity stream of one simulation."""

    first_day: int  # first simulated world day
    n_days: int
    n_markets: int
    campaigns: SimCampaigns
    opportunities: Opportunities


def market_of(index: np.ndarray, n_markets: int, salt: int) -> np.ndarray:
    """Market of each id: the splitmix64 finaliser of ``index + salt * golden`` mod ``n_markets``.

    A stable pseudo-random split, as a live test splits users by a hash of their id.
    """
    with np.errstate(over="ignore"):
        x = np.asarray(index).astype(np.uint64) + np.uint64(salt % 2**64) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_markets)).astype(np.int64)


def build_marketplace(world: World, config: SimulateConfig) -> Marketplace:
    """Everything the arms share, drawn from ``config.seed`` alone (see the module docstring)."""
    if config.days > world.params.n_days:
        raise UnitargetError(f"simulate.days = {config.days} exceeds the world's {world.params.n_days} days")
    first_day = world.params.n_days - config.days
    opp_seed, cand_seed, price_seed, draw_seed = np.random.SeedSequence([config.seed, _SIM_STREAM]).spawn(4)
    salt = config.seed * 1_000_003
    user_market = market_of(np.arange(world.n_users), config.markets, salt + _USER_SALT)
    c = world.campaigns
    campaign_market = market_of(np.arange(c.n_ad_campaigns), config.markets, salt + _CAMPAIGN_SALT)
    start = np.clip(c.ad_start, first_day, world.params.n_days).astype(np.int64)
    end = np.clip(c.ad_end, first_day, world.params.n_days).astype(np.int64)
    end = np.maximum(end, start)
    opp = _stream(world, config, first_day, user_market, np.random.default_rng(opp_seed))
    cpm = config.cpm * np.exp(config.cpm_sd * np.random.default_rng(price_seed).standard_normal(len(start)))
    weight = _budget_weight(world, start, end)
    impressions = _impression_budgets(weight, campaign_market, opp["market"], config)
    campaigns = SimCampaigns(
        market=campaign_market, cpm=cpm, budget=config.budget_share * impressions * cpm / 1000.0,
        start=start, end=end, creative_campaign=c.creative_campaign.astype(np.int64),
    )
    pools = _Pools(world, campaigns, first_day, config.days, config.markets)
    candidates = pools.sample(opp, config.candidates, np.random.default_rng(cand_seed))
    uniforms = np.random.default_rng(draw_seed).random((len(opp["user"]), 4))
    slices = (opp["day"] - first_day) * HOURS + opp["hour"]
    offsets = np.searchsorted(slices, np.arange(config.days * HOURS + 1))
    stream = Opportunities(**opp, candidates=candidates, uniforms=uniforms, slice_offsets=offsets)
    return Marketplace(first_day, config.days, config.markets, campaigns, stream)


def _stream(
    world: World, config: SimulateConfig, first_day: int, user_market: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Opportunities as index arrays sorted by time (users by activity, hours by traffic)."""
    params = world.params
    days = np.arange(first_day, params.n_days)
    weekday = (params.start_datetime.weekday() + days) % 7
    traffic = np.asarray(vocab.WEEKDAY_TRAFFIC)[weekday]
    per_day = config.opportunities_per_day * traffic / np.mean(vocab.WEEKDAY_TRAFFIC)
    per_day = np.round(per_day).astype(np.int64)
    day = np.repeat(days, per_day)
    n = len(day)
    activity = world.users.activity
    user = rng.choice(world.n_users, size=n, p=activity / activity.sum())
    hour = rng.choice(HOURS, size=n, p=vocab.shares(vocab.HOUR_TRAFFIC))
    start_us = int(params.start_datetime.timestamp()) * 1_000_000
    ts_us = start_us + day * _DAY_US + hour * _HOUR_US + rng.integers(0, _HOUR_US, size=n)
    fmt = rng.choice(len(vocab.FORMATS), size=n, p=vocab.shares(vocab.FORMAT_SHARES))
    in_stream = rng.choice(vocab.IN_STREAM_SLOTS, size=n, p=vocab.shares(vocab.IN_STREAM_SLOT_SHARES))
    banner = rng.choice(vocab.BANNER_SLOTS, size=n, p=vocab.shares(vocab.BANNER_SLOT_SHARES))
    other_device = rng.choice(len(vocab.DEVICES), size=n, p=vocab.shares(vocab.DEVICE_SHARES))
    own_device = rng.random(n) < params.primary_device_share
    order = np.argsort(ts_us, kind="stable")
    columns = {
        "user": user, "day": day, "hour": hour, "ts_us": ts_us,
        "surface": vocab.AD_SURFACE_OF_FORMAT[fmt], "slot": np.where(fmt == vocab.DISPLAY, banner, in_stream),
        "device": np.where(own_device, world.users.device[user], other_device),
    }  # fmt: skip
    out = {name: np.asarray(values)[order].astype(np.int64) for name, values in columns.items()}
    out["market"] = user_market[out["user"]]
    return out


def _budget_weight(world: World, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(C,) the world's impression weight of each campaign summed over its days in the window:
    ``budget * weekday traffic * (1 + streams_30d) ** popularity_exponent`` per day, as the
    world's own logging policy spends it (synth/log.py), so bigger shows buy more."""
    params, c = world.params, world.campaigns
    days = np.arange(int(start.min(initial=0)), int(end.max(initial=0)))[:, None]  # (D, 1)
    weekday = (params.start_datetime.weekday() + days) % 7
    running = (start[None, :] <= days) & (days < end[None, :])  # (D, C)
    popularity = (1.0 + world.streams_30d(c.ad_show[None, :], days)) ** params.popularity_exponent
    daily = np.asarray(vocab.WEEKDAY_TRAFFIC)[weekday] * running * c.ad_budget[None, :] * popularity
    return daily.sum(axis=0)


def _impression_budgets(
    weight: np.ndarray, campaign_market: np.ndarray, opportunity_market: np.ndarray, config: SimulateConfig
) -> np.ndarray:
    """(C,) impressions each campaign's full budget buys: ∝ its weight in the window, scaled per
    market to ``budget_to_supply`` x the market's opportunities."""
    n_markets = config.markets
    supply = np.bincount(opportunity_market, minlength=n_markets).astype(np.float64)
    demand = np.bincount(campaign_market, weights=weight, minlength=n_markets)
    scale = np.divide(config.budget_to_supply * supply, demand, out=np.zeros(n_markets), where=demand > 0)
    return weight * scale[campaign_market]


class _Pools:
    """Creatives each opportunity may retrieve, grouped by (day, market, format).

    A creative is in the pool of day d when its campaign runs on d and has a budget.
    """

    def __init__(self, world: World, campaigns: SimCampaigns, first_day: int, n_days: int, n_markets: int):
        self.first_day, self.n_markets = first_day, n_markets
        fmt = world.campaigns.creative_format.astype(np.int64)
        camp = campaigns.creative_campaign
        keys, creatives = [], []
        for day in range(first_day, first_day + n_days):
            running = (campaigns.start[camp] <= day) & (day < campaigns.end[camp])
            running &= campaigns.budget[camp] > 0
            found = np.flatnonzero(running)
            keys.append(self.key(np.full(len(found), day), campaigns.market[camp[found]], fmt[found]))
            creatives.append(found)
        key, creative = np.concatenate(keys), np.concatenate(creatives)
        order = np.argsort(key, kind="stable")
        self.pool_key, self.pool = key[order], creative[order]

    def key(self, day: np.ndarray, market: np.ndarray, fmt: np.ndarray) -> np.ndarray:
        return ((day - self.first_day) * self.n_markets + market) * len(vocab.FORMATS) + fmt

    def sample(self, opp: dict[str, np.ndarray], k: int, rng: np.random.Generator) -> np.ndarray:
        """(N, k) distinct creatives per opportunity from its pool; -1 pads. Loops over pools
        (days x markets x formats), never over opportunities."""
        surface_format = np.full(len(vocab.SURFACES), -1)
        surface_format[vocab.AD_SURFACE_OF_FORMAT] = np.arange(len(vocab.FORMATS))
        opp_key = self.key(opp["day"], opp["market"], surface_format[opp["surface"]])
        out = np.full((len(opp_key), k), -1, dtype=np.int64)
        rows_by_key = np.argsort(opp_key, kind="stable")
        groups, first = np.unique(opp_key[rows_by_key], return_index=True)
        bounds = np.append(first, len(rows_by_key))
        for g, group in enumerate(groups):
            rows = rows_by_key[bounds[g] : bounds[g + 1]]
            lo, hi = np.searchsorted(self.pool_key, [group, group + 1])
            if hi > lo:
                picks = sample_distinct(rng, len(rows), int(hi - lo), k)
                out[rows, : picks.shape[1]] = self.pool[lo + picks]
        return out


def sample_distinct(rng: np.random.Generator, n: int, pool: int, k: int) -> np.ndarray:
    """(n, min(k, pool)) indices into range(pool), distinct within each row, uniformly at random.

    Small pools: the k smallest of random keys (exact, n x pool memory). Large pools: draw with
    replacement and redraw duplicates until none are left (fast when pool >> k).
    """
    k = min(k, pool)
    if pool <= _EXACT_SAMPLING_RATIO * k:
        return np.argsort(rng.random((n, pool)), axis=1)[:, :k]
    picks = rng.integers(0, pool, size=(n, k))
    while True:
        ordered = np.sort(picks, axis=1)
        duplicate_rows = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if len(duplicate_rows) == 0:
            return picks
        sub = np.sort(picks[duplicate_rows], axis=1)
        repeat = np.zeros(sub.shape, dtype=bool)
        repeat[:, 1:] = sub[:, 1:] == sub[:, :-1]
        sub[repeat] = rng.integers(0, pool, size=int(repeat.sum()))
        picks[duplicate_rows] = sub
