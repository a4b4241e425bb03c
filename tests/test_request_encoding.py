"""The request encoder (the scoring service's fast path) writes exactly what FeatureEncoder writes
for the same request as a table: same ids, same dense inputs, same OOV flags."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from unitarget.config import Config, merge
from unitarget.data.features import FeatureEncoder
from unitarget.data.vocabulary import OOV
from unitarget.serving.encoding import RequestEncoder
from unitarget.serving.schemas import Candidate, Context, User
from unitarget.serving.tables import CANDIDATE_FIELDS, CONTEXT_FIELDS, USER_FIELDS, request_table
from unitarget.training.tasks import TaskSet


def _encoder(tiny_log, features: dict | None = None) -> FeatureEncoder:
    config = merge(Config(), {"features": features or {}})
    return FeatureEncoder(config.features, config.sources, TaskSet(config.tasks, config.sources).labels).fit(tiny_log)


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


def _request(tiny_log, rng: random.Random, n: int):
    rows = tiny_log.take(rng.sample(range(tiny_log.num_rows), n + 1)).to_pylist()
    user = User(**{f: rows[0][f] if f == "user_id" else _mess(rows[0][f], rng) for f in USER_FIELDS})
    context = Context(ts=datetime(2026, 1, 5, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(20_000)),
                      **{f: _mess(rows[0][f], rng) for f in CONTEXT_FIELDS})
    candidates = [Candidate(**{f: row[f] if f == "show_id" else _mess(row[f], rng) for f in CANDIDATE_FIELDS})
                  for row in rows[1:]]
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
                                      {"bag_max_len": 2, "drop_groups": ["creative"]}])
def test_requests_encode_exactly_as_their_table(tiny_log, features):
    encoder = _encoder(tiny_log, features)
    fast = RequestEncoder(encoder)
    rng = random.Random(0)
    for n in (1, 3, 40, 200):
        for _ in range(5):
            user, context, candidates = _request(tiny_log, rng, n)
            table = request_table(user, context, candidates)
            expected = encoder.transform(table)
            ids, dense, flags = fast.encode(user, context, candidates, context.ts)
            np.testing.assert_array_equal(ids, expected.ids.numpy())
            np.testing.assert_allclose(dense, expected.dense.numpy(), atol=1e-6)
            wanted = _table_flags(encoder, expected.ids.numpy(), table)
            for name in (*USER_FIELDS, *CONTEXT_FIELDS, *CANDIDATE_FIELDS):
                if name in wanted:
                    np.testing.assert_array_equal(flags[name], wanted[name], err_msg=name)


def test_unknown_and_missing_values_are_told_apart(tiny_log):
    fast = RequestEncoder(_encoder(tiny_log))
    now = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    known = tiny_log.column("show_id")[0].as_py()
    _, _, flags = fast.encode(User(user_id="nobody"), Context(), [Candidate(show_id="nothing"), Candidate(show_id=known)], now)
    assert flags["user_id"].tolist() == [True, True]
    assert flags["show_id"].tolist() == [True, False]
    assert not flags["device"].any() and not flags["user_history_shows"].any()  # not sent: not unknown
