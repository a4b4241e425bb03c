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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from unitarget.io import atomic_write_parquet
from unitarget.synth import vocab
from unitarget.synth.params import WorldParams
from unitarget.synth.placements import Placements, SampledLog
from unitarget.synth.table import build_table
from unitarget.synth.world import World

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_CHUNK = 262_144
_LOG_STREAM = 1  # SeedSequence spawn key of the log, apart from the world's streams


def generate_log(world: World) -> pa.Table:
    """Contract columns plus ``true_<label>`` float64 columns, sorted by ts."""
    return build_table(world, sample_log(world))


def write_synthetic_dataset(out_dir: Path, params: WorldParams) -> Path:
    """Generate a world and its log; write ``out_dir/world/`` and ``out_dir/impressions.parquet``.

    Both are written atomically (``unitarget.io``), so a reader never sees a partial file.
    Returns the Parquet path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = World.generate(params)
    table = generate_log(world)
    world.save(out_dir / "world")
    path = out_dir / "impressions.parquet"
    atomic_write_parquet(table, path, compression="zstd", row_group_size=_CHUNK)
    return path


def sample_log(world: World) -> SampledLog:
    """The log's placements, campaigns, timestamps, drawn labels and true probabilities, sorted by ts; drawn from a
    stream of (params.seed, _LOG_STREAM), so one world always gives the same log."""
    params = world.params
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, _LOG_STREAM]))
    n_ads = round(params.ads_share * params.n_impressions)
    ads = _sample_ads(world, n_ads, rng)
    n_promos = params.n_impressions - n_ads
    promos = _sample_promotions(world, n_promos, rng)
    source = np.r_[np.full(n_ads, vocab.SOURCE_ADS), np.full(n_promos, vocab.SOURCE_PROMOTIONS)]
    slots = {key: np.concatenate([ads[key], promos[key]]) for key in ads}
    day, show = slots.pop("day"), slots.pop("show")
    hour = rng.choice(24, size=len(day), p=vocab.shares(vocab.HOUR_TRAFFIC))
    ts_us = _start_us(params) + day * _DAY_US + hour * _HOUR_US + rng.integers(0, _HOUR_US, size=len(day))
    order = np.argsort(ts_us, kind="stable")
    user = _policy_users(world, show[order], rng)
    placements = Placements(
        user=user, show=show[order], source=source[order], creative=slots["creative"][order],
        surface=slots["surface"][order], device=_devices(world, user, rng), slot=slots["slot"][order],
        layout=slots["layout"][order], hour=hour[order], day=day[order],
    )  # fmt: skip
    labels, truth = _draw_labels(world, placements, rng)
    return SampledLog(placements, slots["campaign"][order], ts_us[order], labels, truth)


def _sample_ads(world: World, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = world.campaigns
    day, campaign = _draw_day_campaign(world, c.ad_start, c.ad_end, c.ad_budget, c.ad_show, n, rng)
    n_creatives = np.diff(c.creative_offsets)[campaign]
    creative = c.creative_offsets[campaign] + (rng.random(n) * n_creatives).astype(np.int64)
    fmt = c.creative_format[creative]
    in_stream = rng.choice(vocab.IN_STREAM_SLOTS, size=n, p=vocab.shares(vocab.IN_STREAM_SLOT_SHARES))
    banner = rng.choice(vocab.BANNER_SLOTS, size=n, p=vocab.shares(vocab.BANNER_SLOT_SHARES))
    return {
        "day": day,
        "show": c.ad_show[campaign].astype(np.int64),
        "campaign": campaign,
        "creative": creative,
        "surface": vocab.AD_SURFACE_OF_FORMAT[fmt].astype(np.int64),
        "slot": np.where(fmt == vocab.DISPLAY, banner, in_stream).astype(np.int64),
        "layout": np.full(n, -1, dtype=np.int64),
    }


def _sample_promotions(world: World, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = world.campaigns
    day, campaign = _draw_day_campaign(
        world, c.promo_start, c.promo_end, c.promo_budget, c.promo_show, n, rng
    )
    search = rng.random(n) < world.params.search_share
    shelf_layout = rng.choice(vocab.SHELF_LAYOUTS, size=n, p=vocab.shares(vocab.SHELF_LAYOUT_SHARES))
    return {
        "day": day,
        "show": c.promo_show[campaign].astype(np.int64),
        "campaign": campaign + c.n_ad_campaigns,
        "creative": np.full(n, -1, dtype=np.int64),
        "surface": np.where(search, vocab.SEARCH, vocab.HOME_SHELF).astype(np.int64),
        "slot": rng.choice(vocab.PROMO_SLOTS, size=n, p=vocab.shares(vocab.PROMO_SLOT_SHARES)),
        "layout": np.where(search, vocab.LIST_ROW, shelf_layout).astype(np.int64),
    }


def _draw_day_campaign(
    world: World, start: np.ndarray, end: np.ndarray, budget: np.ndarray, show: np.ndarray, n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """n (day, campaign) pairs, weight traffic[weekday] * [active] * budget * (1 + streams) ** gamma."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    params = world.params
    days = np.arange(params.n_days)[:, None]  # (D, 1) against campaigns (1, C)
    weekday = (params.start_datetime.weekday() + days) % 7
    active = (start[None, :] <= days) & (days < end[None, :])
    popularity = world.streams_30d(show[None, :], days)
    weights = np.asarray(vocab.WEEKDAY_TRAFFIC)[weekday] * active * budget
    weights = weights * (1.0 + popularity) ** params.popularity_exponent
    total = weights.sum()
    if total <= 0:
        raise ValueError("no campaign of a source with impressions runs during the period; enlarge the world")
    flat = rng.choice(weights.size, size=n, p=(weights / total).ravel())
    return flat // weights.shape[1], flat % weights.shape[1]


def _policy_users(world: World, show: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each impression, the kept user among activity-drawn candidates (Gumbel-max on tau * affinity)."""
    params = world.params
    m, tau = params.policy_candidates, params.policy_temperature
    cdf = np.cumsum(world.users.activity)
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
    for lo in range(0, len(p), _CHUNK):
        block = world.chain(p.slice(lo, lo + _CHUNK))
        for name, values in block.sample(rng).items():
            labels.setdefault(name, []).append(values)
        for name, values in block.marginals().items():
            truth.setdefault(name, []).append(values)
    return (
        {k: np.concatenate(v) for k, v in labels.items()},
        {k: np.concatenate(v) for k, v in truth.items()},
    )


def _start_us(params: WorldParams) -> int:
    return int(params.start_datetime.timestamp()) * 1_000_000
