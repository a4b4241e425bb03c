"""The request encoder (the scoring service's fast path) writes exactly what FeatureEncoder writes
for the same request as a table: same ids, same dense inputs, same OOV flags, extra features
(vectors among them) included; and the pieces both share agree with their Arrow counterparts."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from unitarget.config import Config, merge
from unitarget.data.encoders import TIME_FIELDS, time_column, time_value
from unitarget.data.features import FeatureEncoder
from unitarget.data.vocabulary import OOV
from unitarget.serving.encoding import FeatureValueError, Part, RequestEncoder
from unitarget.serving.schemas import Candidate, Context, User
from unitarget.serving.tables import CANDIDATE_FIELDS, CONTEXT_FIELDS, USER_FIELDS, request_table
from unitarget.training.tasks import TaskSet


#: One extra feature of each kind, carried by each kind of request object.
EXTRAS = [{"name": "show_vec", "group": "content", "kind": "vector"},
          {"name": "show_tags", "group": "content", "kind": "bag"},
          {"name": "user_score", "group": "user", "kind": "numeric"},
          {"name": "venue", "group": "context", "kind": "categorical"}]
VECTOR_WIDTH = 3


def _encoder(tiny_log, features: dict | None = None) -> FeatureEncoder:
    config = merge(Config(), {"features": features or {}})
    return FeatureEncoder(config.features, config.sources, TaskSet(config.tasks, config.sources).labels).fit(tiny_log)


def _with_extras(tiny_log):
    """The log plus a column for each of ``EXTRAS`` (the vector a fixed-size list, as logs store it)."""
    g = np.random.default_rng(0)
    n = tiny_log.num_rows
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(g.standard_normal(n * VECTOR_WIDTH), pa.float32()),
                                                VECTOR_WIDTH)
    tags = [[f"t{k}" for k in g.choice(8, g.integers(0, 4), replace=False)] for _ in range(n)]
    return tiny_log.append_column("show_vec", vectors).append_column("show_tags", pa.array(tags)) \
        .append_column("user_score", pa.array(g.normal(2.0, 3.0, n))) \
        .append_column("venue", pa.array(g.choice(["home", "car", "gym"], n)))


def _mess(value, rng: random.Random):
    """A log value, or None, or an id the model never saw, or (lists) a longer or empty list."""
    roll = rng.random()
    if roll < 0.15:
        return None
    if isinstance(value, list):
        return [] if roll < 0.3 else value * 7 + ["never-seen"] if roll < 0.45 else value
    if isinstance(value, str) and roll < 0.3:
        return f"never-seen-{rng.randrange(5)}"
    return value


def _extras(row: dict, names: list[str], sent: set[str], rng: random.Random) -> dict | None:
    """The extra features ``names`` of a log row that are ``sent``, messed up like the standard
    ones; None left out."""
    vector = {"show_vec"}  # a vector is sent whole or not at all (other widths are rejected)
    features = {name: (None if rng.random() < 0.15 else row[name]) if name in vector else _mess(row[name], rng)
                for name in names if name in sent}
    features = {name: value for name, value in features.items() if value is not None}
    return features or None


def _request(tiny_log, rng: random.Random, n: int, sent: set[str] = frozenset()):
    rows = tiny_log.take(rng.sample(range(tiny_log.num_rows), n + 1)).to_pylist()
    user = User(**{f: rows[0][f] if f == "user_id" else _mess(rows[0][f], rng) for f in USER_FIELDS},
                features=_extras(rows[0], ["user_score"], sent, rng))
    context = Context(ts=datetime(2026, 1, 5, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(20_000)),
                      **{f: _mess(rows[0][f], rng) for f in CONTEXT_FIELDS}, features=_extras(rows[0], ["venue"], sent, rng))
    candidates = [Candidate(**{f: row[f] if f == "show_id" else _mess(row[f], rng) for f in CANDIDATE_FIELDS},
                            features=_extras(row, ["show_vec", "show_tags"], sent, rng)) for row in rows[1:]]
    return user, context, candidates


def _table_flags(encoder: FeatureEncoder, ids: np.ndarray, table) -> dict[str, np.ndarray]:
    """What the table path reports: a given value that encoded to OOV (a bag: any OOV token)."""
    layout, flags = encoder.layout_, {}
    for j, name in enumerate(layout.categorical):
        if name in table.column_names:
            flags[name] = table.column(name).is_valid().to_numpy(zero_copy_only=False) & (
                ids[:, j] == layout.offsets[name] + OOV)
    for name, start, stop in layout.bags:
        flags[name] = (ids[:, start:stop] == layout.offsets[name] + OOV).any(axis=1)
    return flags


@pytest.mark.parametrize("features", [None, {"hash_buckets": {"user_id": 97, "show_id": 31, "user_history_shows": 13}},
                                      {"bag_max_len": 2, "drop_groups": ["creative"]},
                                      {"extra": EXTRAS, "hash_buckets": {"venue": 5}}])
def test_requests_encode_exactly_as_their_table(tiny_log, features):
    log = _with_extras(tiny_log)
    encoder = _encoder(log, features)
    fast = RequestEncoder(encoder)
    rng = random.Random(0)
    for n in (1, 3, 40, 200):
        for _ in range(5):
            user, context, candidates = _request(log, rng, n, {e.name for e in encoder.features.extra})
            table = request_table(user, context, candidates, extras=encoder.features.extra)
            expected = encoder.transform_features(table)
            ids, dense, flags = fast.encode(user, context, candidates, context.ts)
            np.testing.assert_array_equal(ids, expected.ids.numpy())
            np.testing.assert_array_equal(dense, expected.dense.numpy())
            wanted = _table_flags(encoder, expected.ids.numpy(), table)
            for name in wanted:
                np.testing.assert_array_equal(flags[name], wanted[name], err_msg=name)
    if features and features.get("extra"):
        vector = [n for n, _ in encoder.layout_.dense].index("show_vec")  # width 1 counts come first
        assert encoder.layout_.dense[vector] == ("show_vec", VECTOR_WIDTH) and np.abs(dense[:, vector:]).sum() > 0


@pytest.mark.parametrize("features", [None, {"extra": EXTRAS, "hash_buckets": {"venue": 5}}])
def test_requests_encoded_together_get_exactly_their_rows_alone(tiny_log, features):
    """A batch of requests of different sizes, users, contexts and times: each request's slice of the batch's ids,
    dense inputs and OOV flags is what it gets encoded alone."""
    log = _with_extras(tiny_log)
    encoder = _encoder(log, features)
    fast = RequestEncoder(encoder)
    rng = random.Random(1)
    parts = []
    for n in (3, 1, 40, 7, 200):
        user, context, candidates = _request(log, rng, n, {e.name for e in encoder.features.extra})
        parts.append(Part(user, context, candidates, context.ts))
    together = fast.encode_many(parts)
    assert together.bounds == (0, 3, 4, 44, 51, 251)
    for r, part in enumerate(parts):
        ids, dense, flags = fast.encode(*part)
        rows = slice(together.bounds[r], together.bounds[r + 1])
        np.testing.assert_array_equal(together.ids[rows], ids)
        np.testing.assert_array_equal(together.dense[rows], dense)
        assert together.flags_of(r).keys() == flags.keys()
        for name, alone in flags.items():
            np.testing.assert_array_equal(together.flags_of(r)[name], alone, err_msg=name)
    assert len({part.ts for part in parts}) > 1 and len({part.user.user_id for part in parts}) > 1


def test_extra_features_the_model_cannot_read_are_named(tiny_log):
    fast = RequestEncoder(_encoder(_with_extras(tiny_log), {"extra": EXTRAS}))
    user, now = User(user_id="u"), datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    cases = {
        ("candidates", 1, "features", "show_vec"): [Candidate(show_id="s"), Candidate(show_id="s", features={"show_vec": [1.0, 2.0]})],
        ("candidates", 0, "features", "user_score"): [Candidate(show_id="s", features={"user_score": 1.0})],
        ("candidates", 0, "features", "show_tags"): [Candidate(show_id="s", features={"show_tags": "a"})],
        ("candidates", 0, "features", "nope"): [Candidate(show_id="s", features={"nope": "a"})],
    }
    for loc, candidates in cases.items():
        with pytest.raises(FeatureValueError) as raised:
            fast.encode(user, Context(), candidates, now)
        assert raised.value.loc == ["body", *loc]
    with pytest.raises(FeatureValueError, match="3 numbers, not 2"):
        fast.encode(user, Context(), cases[("candidates", 1, "features", "show_vec")], now)
    with pytest.raises(FeatureValueError) as raised:
        fast.encode(user, Context(features={"venue": 3.0}), [Candidate(show_id="s")], now)
    assert raised.value.loc == ["body", "context", "features", "venue"]


def test_hour_and_weekday_of_a_time_are_the_same_on_both_paths():
    times = [datetime(2026, 1, 5, tzinfo=timezone.utc) + timedelta(minutes=37 * k) for k in range(400)]
    column = pa.chunked_array([pa.array(times, pa.timestamp("us", tz="UTC"))])
    for name in TIME_FIELDS:
        assert time_column(name, column).to_pylist() == [time_value(name, ts) for ts in times]
    assert {time_value("weekday", ts) for ts in times} == {str(d) for d in range(7)}


def test_unknown_and_missing_values_are_told_apart(tiny_log):
    fast = RequestEncoder(_encoder(tiny_log))
    now = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    known = tiny_log.column("show_id")[0].as_py()
    _, _, flags = fast.encode(User(user_id="nobody"), Context(), [Candidate(show_id="nothing"), Candidate(show_id=known)], now)
    assert flags["user_id"].tolist() == [True, True]
    assert flags["show_id"].tolist() == [True, False]
    assert not flags["device"].any() and not flags["user_history_shows"].any()  # not sent: not unknown
