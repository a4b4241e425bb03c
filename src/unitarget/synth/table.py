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
    return TableBuilder(world).build(log)


class TableBuilder:
    """Builds contract tables for one world, piece by piece: the entity strings and per-user / per-show lists are
    made once here, not again for every piece of a log."""

    def __init__(self, world: World) -> None:
        users, shows, c = world.users, world.shows, world.campaigns
        self.world = world
        self.show_ids = vocab.show_ids(world.n_shows)
        self.user_ids = vocab.user_ids(world.n_users)
        self.publisher_ids = vocab.publisher_ids(world.params.n_publishers)
        self.campaign_ids = pa.concat_arrays(
            [vocab.ad_campaign_ids(c.n_ad_campaigns), vocab.promo_campaign_ids(c.n_promo_campaigns)]
        )
        self.creative_ids = vocab.creative_ids(c.n_creatives)
        self.history = _per_entity(users.history_offsets, self.show_ids.take(users.history))
        self.followed = _per_entity(users.followed_offsets, self.show_ids.take(users.followed))
        self.topics = _per_entity(shows.topic_offsets, vocab.topic_ids(world.params.n_topics).take(shows.topics))

    def build(self, log: SampledLog, first_row: int = 0, n_rows: int | None = None) -> pa.Table:
        """The table of ``log``, whose rows are ``first_row:`` of a log of ``n_rows`` rows (default: ``log`` is the
        whole log); impression ids are positions in that log."""
        world, p, users, shows = self.world, log.placements, self.world.users, self.world.shows
        columns: dict[str, pa.Array] = {
            IMPRESSION_ID: _impression_ids(first_row, len(p), len(p) if n_rows is None else n_rows),
            TS: pa.array(log.ts_us, type=pa.timestamp("us", tz="UTC")),
            SOURCE: _lookup(vocab.SOURCES, p.source),
            USER_ID: self.user_ids.take(p.user),
            SHOW_ID: self.show_ids.take(p.show),
            **{name: pa.array(log.labels[name], type=pa.int8(), mask=log.labels[name] < 0) for name in LABELS},
            "user_country": _lookup(vocab.COUNTRIES, users.country[p.user]),
            "user_age_bucket": _lookup(vocab.AGE_BUCKETS, users.age[p.user]),
            "user_history_shows": self.history.take(pa.array(p.user)),
            "user_followed_shows": self.followed.take(pa.array(p.user)),
            "episode_id": _episode_ids(world, self.show_ids, p.show, p.day),
            "show_genre": _lookup(vocab.GENRES, shows.genre[p.show]),
            "show_topics": self.topics.take(pa.array(p.show)),
            "show_publisher": self.publisher_ids.take(shows.publisher[p.show]),
            SHOW_STREAMS_30D: pa.array(world.streams_30d(p.show, p.day), type=pa.int64()),
            "show_age_days": pa.array(world.show_age_days(p.show, p.day), type=pa.int32()),
            "surface": _lookup(vocab.SURFACES, p.surface),
            "device": _lookup(vocab.DEVICES, p.device),
            FORMAT: _lookup(vocab.FORMATS, _format_index(world, p)),
            "campaign_id": self.campaign_ids.take(log.campaign),
            "creative_id": self.creative_ids.take(_nullable(p.creative)),
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


def _per_entity(offsets: np.ndarray, values: pa.Array) -> pa.ListArray:
    """Entity i's list is ``values[offsets[i]:offsets[i + 1]]``; ``take`` by a row's entity gives its list column."""
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)


def _impression_ids(first: int, n: int, total: int) -> pa.Array:
    """"i" + zero-padded position in the time-sorted log of ``total`` rows (width from ``total``, so that every
    piece of a log pads alike): unique and stable for a seed."""
    width = max(9, len(str(max(total - 1, 0))))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(first, first + n)), pa.string()), width=width, padding="0")
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
