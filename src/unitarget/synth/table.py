"""Turning a sampled log (index arrays) into the contract's Arrow table, without per-row Python.

String columns are small vocabularies ``take``-n by index; list columns are per-user / per-show
ListArrays (CSR offsets + values) ``take``-n by the row's user / show.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget.contract import FORMAT, IMPRESSION_ID, LABELS, SHOW_ID, SHOW_STREAMS_30D, SOURCE, TS, USER_ID
from unitarget.contract import REQUIRED_COLUMNS, STANDARD_FEATURES, true_probability_column
from unitarget.synth import vocab
from unitarget.synth.labels import ad_format
from unitarget.synth.placements import Placements, SampledLog
from unitarget.synth.world import World

#: Required columns, labels, then the standard features, each once, in contract order.
CONTRACT_ORDER = tuple(dict.fromkeys([*REQUIRED_COLUMNS, *LABELS, *(f.name for f in STANDARD_FEATURES)]))


def build_table(world: World, log: SampledLog) -> pa.Table:
    """Contract columns in contract order, then ``true_<label>`` float64 (NaN where label is null)."""
    p, users, shows, c = log.placements, world.users, world.shows, world.campaigns
    show_strings = vocab.show_ids(world.n_shows)
    topic_strings = vocab.topic_ids(world.params.n_topics)
    columns: dict[str, pa.Array] = {
        IMPRESSION_ID: _impression_ids(len(p)),
        TS: pa.array(log.ts_us, type=pa.timestamp("us", tz="UTC")),
        SOURCE: _lookup(vocab.SOURCES, p.source),
        USER_ID: vocab.user_ids(world.n_users).take(p.user),
        SHOW_ID: show_strings.take(p.show),
        **{name: pa.array(log.labels[name], type=pa.int8(), mask=log.labels[name] < 0) for name in LABELS},
        "user_country": _lookup(vocab.COUNTRIES, users.country[p.user]),
        "user_age_bucket": _lookup(vocab.AGE_BUCKETS, users.age[p.user]),
        "user_history_shows": _lists(users.history_offsets, show_strings.take(users.history), p.user),
        "user_followed_shows": _lists(users.followed_offsets, show_strings.take(users.followed), p.user),
        "episode_id": _episode_ids(world, show_strings, p.show, p.day),
        "show_genre": _lookup(vocab.GENRES, shows.genre[p.show]),
        "show_topics": _lists(shows.topic_offsets, topic_strings.take(shows.topics), p.show),
        "show_publisher": vocab.publisher_ids(world.params.n_publishers).take(shows.publisher[p.show]),
        SHOW_STREAMS_30D: pa.array(world.streams_30d(p.show, p.day), type=pa.int64()),
        "show_age_days": pa.array(world.show_age_days(p.show, p.day), type=pa.int32()),
        "surface": _lookup(vocab.SURFACES, p.surface),
        "device": _lookup(vocab.DEVICES, p.device),
        FORMAT: _lookup(vocab.FORMATS, _format_index(world, p)),
        "campaign_id": pa.concat_arrays(
            [vocab.ad_campaign_ids(c.n_ad_campaigns), vocab.promo_campaign_ids(c.n_promo_campaigns)]
        ).take(log.campaign),
        "creative_id": vocab.creative_ids(c.n_creatives).take(_nullable(p.creative)),
        "slot": _lookup(vocab.SLOTS, p.slot),
        "layout": _lookup(vocab.LAYOUTS, p.layout),
    }
    if set(columns) != set(CONTRACT_ORDER):  # a column renamed in the contract must fail loudly here
        mismatch = sorted(set(columns) ^ set(CONTRACT_ORDER))
        raise RuntimeError(f"synthetic columns {mismatch} disagree with the contract")
    ordered = {name: columns[name] for name in CONTRACT_ORDER}
    for name in LABELS:
        ordered[true_probability_column(name)] = pa.array(log.truth[name], type=pa.float64())
    return pa.table(ordered)


def _lookup(strings: tuple[str, ...], index: np.ndarray) -> pa.Array:
    """``strings[index]`` as a string array; null where ``index < 0``."""
    return pa.array(strings, type=pa.string()).take(_nullable(index))


def _nullable(index: np.ndarray) -> pa.Array:
    index = np.asarray(index, dtype=np.int64)
    return pa.array(index, type=pa.int64(), mask=index < 0)


def _lists(offsets: np.ndarray, values: pa.Array, rows: np.ndarray) -> pa.Array:
    """Row i gets ``values[offsets[rows[i]]:offsets[rows[i] + 1]]``: a list<string> column."""
    per_entity = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)
    return per_entity.take(pa.array(rows, type=pa.int64()))


def _impression_ids(n: int) -> pa.Array:
    """"i" + zero-padded position in the time-sorted log: unique and stable for a seed."""
    width = max(9, len(str(max(n - 1, 0))))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise("i", digits, "")


def _episode_ids(world: World, show_strings: pa.Array, show: np.ndarray, day: np.ndarray) -> pa.Array:
    """``<show_id>e<episode number>``, formatted once per distinct (show, episode)."""
    number = world.episode_number(show, day)
    code = show * (int(number.max(initial=0)) + 1) + number
    distinct, inverse = np.unique(code, return_inverse=True)
    distinct_show, distinct_number = np.divmod(distinct, int(number.max(initial=0)) + 1)
    names = show_strings.take(pa.array(distinct_show)).to_pylist()
    strings = pa.array([f"{s}e{k:04d}" for s, k in zip(names, distinct_number.tolist())], type=pa.string())
    return strings.take(pa.array(inverse.ravel()))


def _format_index(world: World, p: Placements) -> np.ndarray:
    """Ads: the creative's format. Promotions: "display" on the home shelf, null (-1) in search."""
    promo_format = np.where(p.surface == vocab.HOME_SHELF, vocab.DISPLAY, -1)
    return np.where(p.source == vocab.SOURCE_PROMOTIONS, promo_format, ad_format(world, p))
