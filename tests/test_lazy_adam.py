"""Lazy (row-sparse) Adam: the same steps as Adam on the rows a batch touched, none elsewhere."""

import pytest
import torch

from tests.helpers import tiny_batch, tiny_layout
from unitarget.config import Config, merge
from unitarget.errors import ConfigError
from unitarget.models.average import first_member
from unitarget.models.embeddings import FeatureEmbedder
from unitarget.training.lazy_adam import LazyAdam


def _embedder_and_batch(sparse: bool):
    layout = tiny_layout()
    torch.manual_seed(0)
    embedder = FeatureEmbedder(layout, 4)
    embedder.sparse_grad = sparse
    return embedder, tiny_batch(layout, [0] * 6)


def test_the_sparse_table_gradient_equals_the_dense_one_on_its_rows():
    grads = []
    for sparse in (False, True):
        embedder, batch = _embedder_and_batch(sparse)
        embedder(batch.features.ids, batch.features.dense).square().sum().backward()
        grads.append(embedder.table.weight.grad)
    dense, sparse = grads
    assert sparse.is_sparse and torch.equal(sparse.to_dense(), dense)
    touched = set(sparse.coalesce().indices()[0].tolist())
    assert 0 not in touched and touched == set(dense.abs().sum(1).nonzero().squeeze(1).tolist())


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lazy_adam_matches_adam_on_touched_rows_and_leaves_the_others(weight_decay):
    torch.manual_seed(1)
    start = torch.randn(10, 3)
    dense_param, lazy_param = start.clone().requires_grad_(), start.clone().requires_grad_()
    adam = torch.optim.Adam([dense_param], lr=0.1, weight_decay=weight_decay)
    lazy = LazyAdam([lazy_param], lr=0.1, weight_decay=weight_decay)
    rows = torch.tensor([1, 4, 7])
    for step in range(3):
        grad = torch.zeros(10, 3)
        grad[rows] = torch.randn(3, 3)
        dense_param.grad = grad.clone()
        lazy_param.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), grad[rows], (10, 3), is_coalesced=True)
        if weight_decay:  # Adam's decay reaches every row; compare on a one-step-old copy of the rest
            dense_param.grad[~torch.isin(torch.arange(10), rows)] = -weight_decay * dense_param.detach()[
                ~torch.isin(torch.arange(10), rows)]
        adam.step()
        lazy.step()
    others = ~torch.isin(torch.arange(10), rows)
    assert torch.allclose(lazy_param[rows], dense_param[rows], atol=1e-6)
    assert torch.equal(lazy_param.detach()[others], start[others])


def test_dense_parameters_take_exactly_torchs_adam_steps():
    torch.manual_seed(2)
    a, b = torch.randn(5, requires_grad=True), None
    b = a.detach().clone().requires_grad_()
    ours, theirs = LazyAdam([a], lr=0.05), torch.optim.Adam([b], lr=0.05, fused=True)
    for _ in range(4):
        g = torch.randn(5)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    assert torch.allclose(a, b, atol=1e-7)


def test_lazy_updates_are_refused_with_balancers_that_need_dense_gradients():
    with pytest.raises(ConfigError, match="embedding_updates"):
        merge(Config(), {"optim": {"embedding_updates": "lazy"}, "loss": {"method": "pcgrad"}})


def test_a_model_trains_with_lazy_updates_and_rows_no_batch_touched_keep_their_start(tiny_log, tmp_path,
                                                                                    fast_config):
    from unitarget.pipeline import train

    config = merge(fast_config, {"optim": {"embedding_updates": "lazy"}, "train": {"max_epochs": 1}})
    trained = train(tiny_log, tmp_path / "run", config)
    assert trained.record.best_valid_score > 0
    torch.manual_seed(config.train.seed)  # build_setup's seed: the table's starting values
    from unitarget.models import build_model

    start = build_model(config.model, trained.encoder.layout_, trained.model.task_names).embedder.table.weight
    moved = (first_member(trained.model).embedder.table.weight.detach() != start.detach()).any(1)
    assert 0.0 < moved.float().mean() < 1.0  # rare ids (and OOV rows) that never appear stay put


@pytest.mark.parametrize("rows", [40, 5_000])  # the dense-buffer path and the unique-rows path
def test_both_row_sparse_paths_give_the_dense_gradient(rows):
    from unitarget.models.embeddings import pooled_lookup

    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 40, (8, 5), generator=generator)  # 0 is padding
    weights = torch.rand(8, 5, generator=generator)
    slot = torch.tensor([0, 1, 2, 2, 2])
    grads = []
    for sparse in (False, True):
        table = torch.nn.Parameter(torch.randn(rows, 3, generator=torch.Generator().manual_seed(4)))
        pooled_lookup(table, ids, weights, slot, 2, [(2, 5)], sparse).square().sum().backward()
        grads.append(table.grad)
    assert grads[1].is_sparse and torch.allclose(grads[1].to_dense(), grads[0], atol=1e-6)
    assert 0 not in grads[1].coalesce().indices()[0].tolist()


def test_a_ten_million_user_id_space_trains_streamed_with_lazy_updates(tiny_log_path, tmp_path, fast_config,
                                                                        one_thread):
    """The path docs/scaling.md gives for a 10 M+ user-id space: hashed ids, lazy updates, the streamed log. A
    2-wide table keeps the test's memory small (10 M x 2 floats, and Adam's two moments); the width does not change
    the path."""
    from unitarget.pipeline import load_log, train

    config = merge(fast_config, {"features": {"hash_buckets": {"user_id": 10_000_000}}, "model": {"embedding_dim": 2},
                                 "optim": {"embedding_updates": "lazy"}, "train": {"max_epochs": 1}})
    trained = train(tiny_log_path, tmp_path / "run", config)
    table = first_member(trained.model).embedder.table.weight
    offset = trained.encoder.layout_.offsets["user_id"]
    assert table.shape[0] > 10_000_000
    users = table[offset:offset + 10_000_000].detach()
    torch.manual_seed(config.train.seed)
    from unitarget.models import build_model

    start = build_model(config.model, trained.encoder.layout_, trained.model.task_names).embedder.table.weight
    moved = (users != start[offset:offset + 10_000_000].detach()).any(1)
    assert 0 < int(moved.sum()) <= 600  # the tiny world's 600 users moved their buckets, no other bucket did
    probabilities = trained.probabilities(load_log(tiny_log_path, config).slice(0, 500))
    assert torch.isfinite(torch.from_numpy(probabilities)).all()
