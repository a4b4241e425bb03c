"""The streaming training path: the encoded cache, its key and rebuilds, and the windowed batches."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from unitarget.config import merge
from tests.helpers import tiny_batch, tiny_layout, with_formats
from unitarget.data.cache import EncodedCache, Shard, ShardWriter, cache_key
from unitarget.data.features import FeatureEncoder
from unitarget.data.logs import load_log
from unitarget.errors import ContractError
from unitarget.pipeline import split_training_log, train
from unitarget.streaming import cache_settings, prepare_cache
from unitarget.training.tasks import labels_of
from unitarget.training.windows import CachedRows, FixedCounts, NaturalCounts, WindowedBatches

SMALL_STREAM = {"stream": {"chunk_rows": 5_000, "block_rows": 1_000, "shuffle_blocks": 3}}


@pytest.fixture
def stream_config(fast_config):
    return merge(fast_config, SMALL_STREAM)


def _only_cache(root):
    (entry,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return entry


def _assert_same_encoder(a: FeatureEncoder, b: FeatureEncoder) -> None:
    """Equal fitted state; numeric statistics merged across chunks agree to rounding (data.fitting.Moments)."""
    left, right = a.to_dict(), b.to_dict()
    stats_a, stats_b = left.pop("numeric_stats"), right.pop("numeric_stats")
    assert left == right
    assert stats_a.keys() == stats_b.keys()
    for name, value in stats_a.items():
        assert value == pytest.approx(stats_b[name], rel=1e-12)


def test_the_cache_holds_what_the_in_memory_path_encodes(tiny_log_path, tmp_path, stream_config):
    cache = prepare_cache(tiny_log_path, stream_config, tmp_path / "cache")
    split = split_training_log(tiny_log_path, stream_config)
    encoder = FeatureEncoder(stream_config.features, stream_config.sources, labels_of(stream_config.tasks),
                             stream_config.shared_vocabularies()).fit(split.older)
    _assert_same_encoder(cache.encoder, encoder)
    assert cache.info["span"]["train_rows"] == split.older.num_rows == cache.train_rows
    assert cache.valid.rows == split.newest.num_rows
    expected = encoder.transform(split.newest)
    got = next(cache.valid.chunks(cache.valid.rows))
    assert torch.equal(got.features.ids, expected.features.ids)
    assert torch.equal(got.features.dense, expected.features.dense)
    for name in ("labels", "label_mask", "source", "tier", "format"):
        assert torch.equal(getattr(got.targets, name), getattr(expected.targets, name)), name


def _numbered_shard(directory, rows: int, source: int) -> Shard:
    """A shard whose dense column holds each row's number, so batches can be traced to their rows."""
    layout = tiny_layout()
    batch = with_formats(tiny_batch(layout, [source] * rows), [0] * rows)
    batch.features.dense[:, 0] = torch.arange(rows, dtype=torch.float32)
    widths = {"ids": layout.ids_width, "dense": layout.dense_dim, "labels": 4, "label_mask": 4, "source": 1,
              "tier": 1, "format": 1}
    writer = ShardWriter(directory, widths)
    writer.append(batch)
    return Shard(directory, writer.close(), widths)


def test_windowed_batches_keep_the_source_counts_and_visit_every_row_once_a_pass(tmp_path):
    shards = {0: _numbered_shard(tmp_path / "a", 1_000, 0), 1: _numbered_shard(tmp_path / "b", 300, 1)}
    stream = WindowedBatches(shards, FixedCounts({0: 60, 1: 40}, 16), block_rows=64, window_blocks=3, seed=1)
    drawn = {0: [], 1: []}
    for batch in stream.epoch(0):
        for s, count in stream.plan.counts.items():
            rows = batch.features.dense[batch.targets.source == s, 0]
            assert len(rows) == count
            drawn[s].append(rows)
    large, small = torch.cat(drawn[0]).long(), torch.cat(drawn[1]).long()
    assert len(large) == 960 and len(torch.unique(large)) == 960  # one pass, no row twice
    for start in (0, 300):  # the small source is cycled: each pass is a permutation of all its rows
        assert sorted(small[start:start + 300].tolist()) == list(range(300))
    assert not torch.equal(large[:64], torch.arange(64))  # shuffled, not in log order
    later = list(stream.epoch(0, start=7))
    whole = list(stream.epoch(0))
    assert all(torch.equal(a.features.dense, b.features.dense) for a, b in zip(whole[7:], later))


def test_a_natural_pass_reads_every_row_at_most_once_an_epoch_interleaving_the_sources(tmp_path):
    shards = {0: _numbered_shard(tmp_path / "a", 1_000, 0), 1: _numbered_shard(tmp_path / "b", 300, 1)}
    plan = NaturalCounts({0: 1_000, 1: 300}, 100, 13, seed=2)
    stream = WindowedBatches(shards, plan, block_rows=64, window_blocks=3, seed=1)
    batches = list(stream.epoch(0))
    assert len(batches) == 13 and all(len(b) == 100 for b in batches)
    for s, rows in ((0, 1_000), (1, 300)):  # 13 batches of 100 are the whole 1,300 rows: each row exactly once
        drawn = torch.cat([b.features.dense[b.targets.source == s, 0] for b in batches]).long()
        assert sorted(drawn.tolist()) == list(range(rows))
    small = [int((b.targets.source == 1).sum()) for b in batches]
    assert len(set(small)) > 1 and max(small) < 50  # drawn batch by batch, around 300 / 13 each
    later = list(stream.epoch(0, start=6))
    assert all(torch.equal(a.features.dense, b.features.dense) for a, b in zip(batches[6:], later))
    assert not np.array_equal(plan.per_batch(1), plan.per_batch(0))


def test_streamed_reweight_weights_each_row_by_its_source_and_resumes_at_any_batch(tiny_log_path, tmp_path,
                                                                                    stream_config):
    config = merge(stream_config, {"sampling": {"mode": "reweight", "ratios": {"ads": 0.5, "promotions": 0.5}}})
    rows = CachedRows(prepare_cache(tiny_log_path, config, tmp_path / "cache"), config.sources)
    counts = {s: shard.rows for s, shard in rows.shards.items()}
    total = sum(counts.values())
    whole = list(rows.batches(config).epoch(1))
    later = list(rows.batches(config).epoch(1, start=3))
    assert len(whole) == total // config.train.batch_size
    weight, source = (torch.cat([getattr(b.targets, name) for b in whole]) for name in ("weight", "source"))
    for s, n in counts.items():  # ratio / natural share
        assert torch.allclose(weight[source == s], torch.tensor(0.5 * total / n))
    assert all(torch.equal(a.features.ids, b.features.ids) and torch.equal(a.targets.weight, b.targets.weight)
               for a, b in zip(whole[3:], later))


def test_an_epoch_is_a_function_of_seed_and_epoch_and_can_start_at_any_batch(tiny_log_path, tmp_path,
                                                                             stream_config):
    rows = CachedRows(prepare_cache(tiny_log_path, stream_config, tmp_path / "cache"), stream_config.sources)
    stream = rows.batches(stream_config)
    whole = list(stream.epoch(1))
    again = list(rows.batches(stream_config).epoch(1))
    later = list(stream.epoch(1, start=5))
    assert all(torch.equal(a.features.ids, b.features.ids) for a, b in zip(whole, again))
    assert len(later) == len(whole) - 5
    assert all(torch.equal(a.features.ids, b.features.ids) and torch.equal(a.targets.labels, b.targets.labels)
               for a, b in zip(whole[5:], later))
    other = next(stream.epoch(2))
    assert not torch.equal(other.features.ids, whole[0].features.ids)


def test_balanced_batches_cycle_the_small_source(tiny_log_path, tmp_path, stream_config):
    config = merge(stream_config, {"sampling": {"balanced": True, "mode": "resample",
                                                "ratios": {"promotions": 0.5, "ads": 0.5}}})
    rows = CachedRows(prepare_cache(tiny_log_path, config, tmp_path / "cache"), config.sources)
    stream = rows.batches(config)
    counts = stream.plan.counts
    assert set(counts.values()) == {config.train.batch_size // 2}
    small = min(stream.shards, key=lambda s: stream.shards[s].rows)
    needed = counts[small] * len(stream)
    assert needed > stream.shards[small].rows  # the small source runs out inside the epoch and is cycled
    batches = list(stream.epoch(0))
    assert all(int((b.targets.source == small).sum()) == counts[small] for b in batches)


def test_a_rerun_reuses_the_cache_and_a_changed_log_or_setting_rebuilds_it(tiny_log, tmp_path, stream_config):
    log = tmp_path / "log.parquet"
    pq.write_table(tiny_log, log)
    root = tmp_path / "cache"
    first = prepare_cache(log, stream_config, root)
    stamp = (first.path / "manifest.json").stat().st_mtime_ns
    assert prepare_cache(log, stream_config, root).path == first.path
    assert (first.path / "manifest.json").stat().st_mtime_ns == stamp  # read, not rebuilt

    pq.write_table(tiny_log.slice(0, tiny_log.num_rows - 10), log)  # the log changes under the same name
    changed = prepare_cache(log, stream_config, root)
    assert changed.key != first.key and changed.train_rows + changed.valid.rows < first.train_rows + first.valid.rows
    assert _only_cache(root) == changed.path  # the stale cache is removed, never read again

    other = prepare_cache(log, merge(stream_config, {"features": {"min_count": 3}}), root)
    assert other.key != changed.key
    by_group = merge(stream_config, {"features": {"min_count_by_group": {"user": 3}}})
    assert cache_key(log, cache_settings(by_group)) not in (other.key, changed.key)


def test_a_damaged_cache_is_detected_and_rebuilt(tiny_log_path, tmp_path, stream_config):
    root = tmp_path / "cache"
    cache = prepare_cache(tiny_log_path, stream_config, root)
    ids = cache.valid.directory / "ids.bin"
    with open(ids, "r+b") as f:
        f.truncate(ids.stat().st_size - 4)
    assert EncodedCache.open(cache.path) is None
    rebuilt = prepare_cache(tiny_log_path, stream_config, root)
    assert rebuilt.key == cache.key and EncodedCache.open(rebuilt.path) is not None


def test_a_bad_row_in_a_later_chunk_stops_the_build_and_leaves_no_cache(tiny_log, tmp_path, stream_config):
    bad_row = 12_345
    ts = tiny_log.column("ts").to_pylist()
    ts[bad_row] = None
    log = tmp_path / "bad.parquet"
    pq.write_table(tiny_log.set_column(tiny_log.schema.get_field_index("ts"), "ts", pa.array(ts)), log)
    with pytest.raises(ContractError) as err:
        train(log, tmp_path / "run", stream_config)
    assert str(bad_row) in str(err.value)
    assert not (tmp_path / "run").exists()
    root = tmp_path / ".run.cache"
    assert not root.exists() or not os.listdir(root)


def test_streamed_training_publishes_a_run_like_the_in_memory_one(tiny_log_path, tmp_path, stream_config, one_thread):
    streamed = train(tiny_log_path, tmp_path / "streamed", stream_config)
    in_memory = train(load_log(tiny_log_path, stream_config), tmp_path / "memory", stream_config)
    _assert_same_encoder(streamed.encoder, in_memory.encoder)
    assert streamed.record.span == in_memory.record.span
    assert streamed.record.valid_window == in_memory.record.valid_window
    assert (tmp_path / ".streamed.cache").is_dir()
    # Different batches (windows, not one permutation), the same model class: both learn.
    assert np.isfinite(streamed.record.best_valid_score) and np.isfinite(in_memory.record.best_valid_score)
    assert abs(streamed.record.best_valid_score - in_memory.record.best_valid_score) < 0.5 * in_memory.record.best_valid_score


def test_a_streamed_run_trains_with_reweight_and_the_embedding_regularisers(tiny_log_path, tmp_path, stream_config,
                                                                           one_thread):
    config = merge(stream_config, {"sampling": {"mode": "reweight"}, "train": {"max_epochs": 1},
                                   "features": {"min_count_by_group": {"user": 5}},
                                   "model": {"embedding_decay": {"user": 1e-4}, "embedding_dropout": {"content": 0.1}}})
    trained = train(tiny_log_path, tmp_path / "run", config)
    assert np.isfinite(trained.record.best_valid_score) and trained.record.best_valid_score > 0
    assert trained.encoder.vocabularies_["user_id"].min_count == 5
