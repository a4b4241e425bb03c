import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from unitarget import contract
from unitarget.config import FeaturesConfig
from unitarget.data.features import FeatureEncoder

LABELS = ("stream", "click", "like", "follow")


def _encoder(table, **features):
    return FeatureEncoder(FeaturesConfig(**features), contract.DEFAULT_SOURCES, LABELS).fit(table)


def test_every_present_standard_column_and_time_features_are_used(tiny_log):
    encoder = _encoder(tiny_log)
    used = {c.name for c in encoder.columns_}
    assert {"user_id", "show_id", "user_history_shows", "show_streams_30d", "hour", "weekday"} <= used
    assert encoder.skipped_ == []


def test_unknown_ids_and_missing_columns_encode_to_oov_rows(tiny_log):
    encoder = _encoder(tiny_log)
    unseen = tiny_log.slice(0, 50)
    unseen = unseen.set_column(unseen.schema.get_field_index("user_id"), "user_id",
                               pa.array(["never-seen"] * 50))
    unseen = unseen.drop_columns(["show_genre", "show_topics"])
    batch = encoder.transform(unseen).features
    layout = encoder.layout_
    assert torch.all(batch.ids[:, layout.categorical.index("user_id")] == layout.offsets["user_id"])
    assert torch.all(batch.ids[:, layout.categorical.index("show_genre")] == layout.offsets["show_genre"])
    _, start, stop = next(b for b in layout.bags if b[0] == "show_topics")
    assert torch.all(batch.ids[:, start:stop] == 0)


def test_ids_stay_inside_their_features_block(tiny_log):
    encoder = _encoder(tiny_log)
    batch = encoder.transform(tiny_log).features
    layout = encoder.layout_
    for j, name in enumerate(layout.categorical):
        block = encoder.vocabularies_[name].size
        column = batch.ids[:, j]
        assert column.min() >= layout.offsets[name] and column.max() < layout.offsets[name] + block


def test_null_labels_are_masked_not_zero(tiny_log):
    batch = _encoder(tiny_log).transform(tiny_log).targets
    like_null = tiny_log.column("like").is_null().to_numpy(zero_copy_only=False)
    assert like_null.any()
    assert not batch.label_mask[like_null, LABELS.index("like")].any()
    assert batch.label_mask[~like_null, LABELS.index("like")].all()


def test_counts_are_log1p_standardised(tiny_log):
    encoder = _encoder(tiny_log)
    batch = encoder.transform(tiny_log).features
    column = [n for n, _ in encoder.layout_.dense].index("show_streams_30d")
    values = batch.dense[:, column].numpy()
    assert abs(values.mean()) < 1e-3 and abs(values.std() - 1) < 1e-2


def test_saved_encoder_encodes_identically(tiny_log):
    encoder = _encoder(tiny_log, hash_buckets={"user_id": 64})
    again = FeatureEncoder.from_dict(encoder.to_dict())
    a, b = encoder.transform(tiny_log), again.transform(tiny_log)
    assert torch.equal(a.features.ids, b.features.ids) and torch.equal(a.features.dense, b.features.dense)
    assert torch.equal(a.targets.tier, b.targets.tier)


def test_dropped_group_is_absent_from_the_encoder_input(tiny_log):
    encoder = _encoder(tiny_log, drop_groups=["creative"])
    assert not {"format", "campaign_id", "creative_id", "slot", "layout"} & set(encoder.layout_.groups)


def test_tiers_fall_back_to_training_stream_counts(tiny_log):
    without = tiny_log.drop_columns(["show_streams_30d"])
    encoder = _encoder(without)
    assert encoder.tier_map_.source_ == "training_stream_counts"
    tiers = encoder.transform(without).targets.tier.numpy()
    streams = pc.fill_null(tiny_log.column("stream"), 0).to_numpy()
    shows = tiny_log.column("show_id").to_numpy(zero_copy_only=False)
    never_streamed = set(shows) - set(shows[streams == 1])
    assert np.all(tiers[np.isin(shows, list(never_streamed))] == 7)


def test_vector_features_pass_through_and_a_missing_vector_reads_as_zeros(tiny_log):
    vectors = pa.array([[float(i), -float(i)] if i % 5 else None for i in range(tiny_log.num_rows)],
                       pa.list_(pa.float32(), 2))
    log = tiny_log.append_column("emb", vectors)
    encoder = _encoder(log, extra=[{"name": "emb", "group": "content", "kind": "vector"}])
    column = [n for n, _ in encoder.layout_.dense].index("emb")  # width-1 counts come first
    dense = encoder.transform(log).features.dense.numpy()[:, column:column + 2]
    expected = np.array([[i, -i] if i % 5 else [0, 0] for i in range(tiny_log.num_rows)], dtype=np.float32)
    np.testing.assert_array_equal(dense, expected)
