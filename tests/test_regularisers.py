"""Id-embedding regularisers (models/regularisers.py): the decay's gradient is the hand-computed one on the rows a
batch reads and nothing elsewhere (dense and lazy updates), feature dropout reads a dropped feature as absent in
training and never in eval, and both are refused where they cannot apply."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_batch, tiny_layout
from unitarget.config import Config, merge
from unitarget.data.encoders import PADDING_ROW
from unitarget.errors import ConfigError
from unitarget.models.embeddings import FeatureEmbedder
from unitarget.models.regularisers import EmbeddingRegulariser
from unitarget.training.lazy_adam import LazyAdam

LAMBDA = 0.3
#: Three user features c0..c2 and a content bag; 12 rows a block, of which the batches read rows 0..4 only.
LAYOUT = tiny_layout(rows_per_feature=12)


def _embedder(decay=None, dropout=None, sparse=False) -> FeatureEmbedder:
    torch.manual_seed(0)
    embedder = FeatureEmbedder(LAYOUT, 4, regulariser=EmbeddingRegulariser(LAYOUT, decay or {}, dropout or {}))
    embedder.sparse_grad = sparse
    return embedder


def _batch(rows: int = 6):
    batch = tiny_batch(LAYOUT, [0] * rows, seed=1)
    batch.features.ids[0, 3:] = PADDING_ROW  # an empty bag
    batch.features.ids[1, 4] = PADDING_ROW  # a bag of one token
    return batch.features


def _table_grad(embedder: FeatureEmbedder, features, upstream_seed: int = 2) -> torch.Tensor:
    embedder.table.weight.grad = None
    out = embedder(features.ids, features.dense)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(upstream_seed))
    (out * upstream).sum().backward()
    grad = embedder.table.weight.grad
    return grad.to_dense() if grad.is_sparse else grad


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "row-sparse"])
def test_the_decay_gradient_is_2_lambda_over_b_times_each_read_rows_pooling_weight(sparse):
    plain, decayed = _embedder(sparse=sparse), _embedder({"user": LAMBDA}, sparse=sparse)
    features = _batch()
    extra = _table_grad(decayed, features) - _table_grad(plain, features)
    # by hand: the user columns (c0..c2, one id each, weight 1) decay; the bag (content) does not
    weight = plain.table.weight.detach()
    expected = torch.zeros_like(weight)
    batch = len(features)
    for x in range(batch):
        for c in range(3):
            row = int(features.ids[x, c])
            expected[row] += 2 * LAMBDA / batch * weight[row]
    assert torch.allclose(extra, expected, atol=1e-6)
    read = torch.unique(features.ids[:, :3].long())
    unread = ~torch.isin(torch.arange(len(weight)), read)
    assert bool(unread.any()) and torch.equal(extra[unread], torch.zeros_like(extra[unread]))


def test_a_bags_tokens_decay_with_their_pooling_weight():
    plain, decayed = _embedder(), _embedder({"content": LAMBDA})
    features = _batch()
    extra = _table_grad(decayed, features) - _table_grad(plain, features)
    weight, expected = plain.table.weight.detach(), torch.zeros_like(plain.table.weight)
    for x in range(len(features)):
        tokens = [int(t) for t in features.ids[x, 3:] if int(t) != PADDING_ROW]
        for t in tokens:  # the bag's mean: each token weighs 1 / len(bag)
            expected[t] += 2 * LAMBDA / len(features) / len(tokens) * weight[t]
    assert torch.allclose(extra, expected, atol=1e-6)


def test_with_lazy_updates_rows_no_batch_reads_stay_exactly_as_they_were():
    embedder = _embedder({"user": LAMBDA, "content": LAMBDA}, sparse=True)
    start = embedder.table.weight.detach().clone()
    optimizer = LazyAdam(embedder.parameters(), lr=0.05)
    features = _batch()
    for _ in range(3):
        optimizer.zero_grad()
        embedder(features.ids, features.dense).square().sum().backward()
        optimizer.step()
    read = torch.isin(torch.arange(len(start)), torch.unique(features.ids.long()))
    after = embedder.table.weight.detach()
    assert torch.equal(after[~read], start[~read])
    assert bool((after[read] != start[read]).any(1)[1:].all())  # every read row but padding moved


def test_with_dense_adam_the_decay_adds_no_gradient_to_unread_rows():
    """What dense Adam is guaranteed: unread rows get a zero gradient, so a first step leaves them as they were (later
    steps move a row along the momentum of earlier batches, with or without decay)."""
    embedder = _embedder({"user": LAMBDA})
    start = embedder.table.weight.detach().clone()
    optimizer = torch.optim.Adam(embedder.parameters(), lr=0.05)
    features = _batch()
    embedder(features.ids, features.dense).square().sum().backward()
    read = torch.isin(torch.arange(len(start)), torch.unique(features.ids.long()))
    assert torch.equal(embedder.table.weight.grad[~read], torch.zeros_like(start[~read]))
    optimizer.step()
    assert torch.equal(embedder.table.weight.detach()[~read], start[~read])


def test_feature_dropout_reads_a_dropped_feature_as_absent_per_row_and_slot():
    embedder = _embedder(dropout={"content": 0.5})
    features = _batch(rows=400)
    torch.manual_seed(3)
    dropped = embedder.regulariser.drop(features.ids)
    assert torch.equal(dropped[:, :3], features.ids[:, :3])  # the user group has no dropout
    bags, kept = dropped[:, 3:], features.ids[:, 3:]
    empty = (bags == PADDING_ROW).all(1)
    assert torch.equal(bags[~empty], kept[~empty])  # a bag is dropped whole or not at all
    assert 0.4 < float(empty.float().mean()) < 0.6
    user = _embedder(dropout={"user": 0.5}).regulariser.drop(features.ids)
    oov = torch.tensor([LAYOUT.offsets[f"c{j}"] for j in range(3)], dtype=torch.int32)
    changed = user[:, :3] != features.ids[:, :3]
    assert bool(changed.any()) and torch.equal(user[:, :3][changed], oov.expand(len(user), 3)[changed])


def test_in_eval_mode_neither_applies_and_the_outputs_are_deterministic():
    plain = _embedder()
    regularised = _embedder({"user": LAMBDA}, {"user": 0.5, "content": 0.5})
    features = _batch(rows=50)
    regularised.eval()
    first = regularised(features.ids, features.dense)
    assert torch.equal(first, regularised(features.ids, features.dense))
    assert torch.equal(first, plain.eval()(features.ids, features.dense))
    assert regularised.regulariser.training_decay() is None
    regularised.train()
    assert not torch.equal(regularised(features.ids, features.dense), first)


def test_no_regulariser_keeps_the_state_dict_and_draws_nothing():
    layout = tiny_layout()
    torch.manual_seed(0)
    plain = FeatureEmbedder(layout, 4)
    torch.manual_seed(0)
    regularised = FeatureEmbedder(layout, 4, regulariser=EmbeddingRegulariser(layout, {"user": 0.1}, {"user": 0.1}))
    assert plain.state_dict().keys() == regularised.state_dict().keys()
    state = torch.get_rng_state()
    plain.train()(tiny_batch(layout, [0] * 4).features.ids, torch.zeros(4, 1))
    assert torch.equal(torch.get_rng_state(), state)  # default: no random draw, so default runs are unchanged


@pytest.mark.parametrize(("overrides", "match"), [
    ({"model": {"embedding_dropout": {"user": 1.0}}}, "embedding_dropout"),
    ({"model": {"embedding_decay": {"users": 1e-4}}}, "embedding_decay"),
])
def test_settings_that_cannot_apply_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        merge(Config(), overrides)
