"""``FeatureEncoder.fit_chunks`` (a log streamed in chunks) fits what ``fit`` fits on the whole log."""

import math

import numpy as np
import pyarrow as pa
import pytest

from unitarget import contract
from unitarget.config import FeaturesConfig
from unitarget.data.features import FeatureEncoder
from unitarget.data.fitting import Moments
from unitarget.errors import UnitargetError
from unitarget.io import iter_log

LABELS = ("stream", "click")
SPLITS = (1000, 7001, 12_000)  # many chunks, uneven chunks with a short last one, two halves


def _encoder(shared=None, **features) -> FeatureEncoder:
    return FeatureEncoder(FeaturesConfig(**features), contract.DEFAULT_SOURCES, LABELS, shared)


def _assert_fits_the_same(table: pa.Table, shared=None, **features) -> FeatureEncoder:
    """fit_chunks over every split of ``table`` gives fit's state: exact, numeric statistics within rounding."""
    fitted = _encoder(shared, **features).fit(table)
    whole = fitted.to_dict()
    stats = whole.pop("numeric_stats")
    for rows in SPLITS:
        chunked = _encoder(shared, **features).fit_chunks(chunk for _, chunk in iter_log(table, rows)).to_dict()
        chunked_stats = chunked.pop("numeric_stats")
        assert chunked == whole, f"chunks of {rows} rows"
        assert chunked_stats.keys() == stats.keys()
        for name, (mean, std) in stats.items():
            assert chunked_stats[name] == pytest.approx((mean, std), rel=1e-12, nan_ok=True), name
    return fitted


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_chunked_fit_equals_fit_on_the_whole_log(tiny_log):
    _assert_fits_the_same(tiny_log)


def test_columns_all_null_in_a_chunk(tiny_log):
    """The first 1000-row chunk has no counts, no history and no vectors at all; statistics come from the rest."""
    n = tiny_log.num_rows
    nulls = pa.array([None] * 1000, tiny_log.schema.field("show_streams_30d").type)
    table = _replace(tiny_log, "show_streams_30d",
                     pa.concat_arrays([nulls, tiny_log.column("show_streams_30d").slice(1000).combine_chunks()]))
    history = tiny_log.column("user_history_shows").combine_chunks()
    table = _replace(table, "user_history_shows",
                     pa.concat_arrays([pa.nulls(1000, history.type), history.slice(1000)]))
    vectors = pa.array([[float(i), 1.0] if i >= 1000 else None for i in range(n)], pa.list_(pa.float32()))
    table = table.append_column("emb", vectors)
    encoder = _assert_fits_the_same(table, extra=[{"name": "emb", "group": "content", "kind": "vector"}])
    assert encoder.vector_widths_ == {"emb": 2}


def test_a_numeric_column_with_no_values_gets_the_same_statistics(tiny_log):
    nulls = pa.nulls(tiny_log.num_rows, tiny_log.schema.field("show_age_days").type)
    encoder = _assert_fits_the_same(_replace(tiny_log, "show_age_days", nulls))
    mean, std = encoder.numeric_stats_["show_age_days"]
    assert math.isnan(mean) and std == 1.0


def test_an_id_reaching_min_count_only_across_chunks_is_kept(tiny_log):
    """"rare" occurs once in each of three 1000-row chunks: no chunk alone reaches min_count 3, the log does."""
    users = tiny_log.column("user_id").to_pylist()
    for row in (10, 1010, 2010):
        users[row] = "rare"
    users[3010] = "rarer"  # twice in all: below min_count however the log is cut
    users[4010] = "rarer"
    table = _replace(tiny_log, "user_id", pa.array(users, pa.string()))
    encoder = _assert_fits_the_same(table, min_count=3)
    kept = encoder.vocabularies_["user_id"].values_.to_pylist()
    assert "rare" in kept and "rarer" not in kept


def test_a_groups_min_count_maps_its_rare_ids_to_the_oov_row_in_both_fits(tiny_log):
    """min_count_by_group raises the user group's threshold only; fit and fit_chunks keep the same ids, the saved
    encoder and the request encoder map a rare user to the OOV row."""
    from collections import Counter

    from unitarget.serving.encoding import RequestEncoder

    encoder = _assert_fits_the_same(tiny_log, min_count=2, min_count_by_group={"user": 40})
    users = Counter(tiny_log.column("user_id").to_pylist())
    shows = Counter(tiny_log.column("show_id").to_pylist())
    assert set(encoder.vocabularies_["user_id"].values_.to_pylist()) == {u for u, n in users.items() if n >= 40}
    assert set(encoder.vocabularies_["show_id"].values_.to_pylist()) == {s for s, n in shows.items() if n >= 2}
    rare = next(u for u, n in users.items() if 2 <= n < 40)
    saved = FeatureEncoder.from_dict(encoder.to_dict())
    assert saved.vocabularies_["user_id"].transform(pa.array([rare])).tolist() == [0]
    assert RequestEncoder(saved).vocabularies["user_id"].lookup([rare]).tolist() == [0]
    assert _encoder(min_count=2).fit(tiny_log).vocabularies_["user_id"].lookup([rare]).tolist() != [0]


def test_a_bag_longest_in_a_later_chunk_sets_the_bag_length(tiny_log):
    longest = max(len(v or []) for v in tiny_log.column("show_topics").to_pylist())
    topics = tiny_log.column("show_topics").to_pylist()
    topics[-5] = [f"t{i}" for i in range(longest + 3)]
    table = _replace(tiny_log, "show_topics", pa.array(topics, pa.list_(pa.string())))
    encoder = _assert_fits_the_same(table)
    assert encoder.bag_lengths_["show_topics"] == longest + 3


def test_a_shared_vocabulary_counts_the_bags_ids(tiny_log):
    """A show seen only in a later chunk's history still gets a row of show_id's vocabulary."""
    history = tiny_log.column("user_history_shows").to_pylist()
    history[-3] = ["history-only", "history-only"]
    table = _replace(tiny_log, "user_history_shows", pa.array(history, pa.list_(pa.string())))
    shared = {"user_history_shows": "show_id"}
    encoder = _assert_fits_the_same(table, shared)
    assert encoder.shared_ == shared
    assert "history-only" in encoder.vocabularies_["show_id"].values_.to_pylist()


def test_hashed_vocabularies(tiny_log):
    encoder = _assert_fits_the_same(tiny_log, hash_buckets={"user_id": 64, "show_topics": 16})
    assert encoder.vocabularies_["user_id"].size == 65


def test_tier_map_from_training_stream_counts(tiny_log):
    encoder = _assert_fits_the_same(tiny_log.drop_columns(["show_streams_30d"]))
    assert encoder.tier_map_.source_ == "training_stream_counts"
    shows = encoder.tier_map_.shows_.to_pylist()
    assert shows == sorted(shows)  # one order for any chunking


def test_no_chunks_is_an_error():
    with pytest.raises(UnitargetError, match="no chunks"):
        _encoder().fit_chunks([])


def test_merged_moments_match_numpy_and_one_chunk_is_bit_identical():
    """Chan's merge stays accurate where the mean dwarfs the spread; one chunk gives np.nanmean/np.nanstd's bits."""
    rng = np.random.default_rng(0)
    values = 1e4 + rng.normal(size=10_001)  # summing x and x² would lose about 1e-9 of the std here
    values[rng.random(values.size) < 0.1] = np.nan
    one = Moments()
    one.update(values)
    assert one.mean_std() == (float(np.nanmean(values)), float(np.nanstd(values)))
    merged = Moments()
    for part in np.array_split(values, [3, 3, 500, 4000, 9999]):  # an empty part among them
        merged.update(part)
    assert merged.mean_std() == pytest.approx((np.nanmean(values), np.nanstd(values)), rel=1e-12)
    assert all(math.isnan(x) for x in Moments().mean_std())  # nothing seen: NaN, as NumPy gives
