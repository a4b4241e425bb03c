"""The co-listening objective (``model.attention.history_loss``, models/colistening.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_attention import ATTENTION, HISTORY, SHOWS, fit_first_task, history_layout, small_config
from unitarget.data.batch import Features
from unitarget.models import build_model
from unitarget.models.colistening import colistening_loss, inject

pytestmark = pytest.mark.usefixtures("one_thread")

HALF = SHOWS // 2


def clustered_rows(n: int, seed: int) -> Features:
    """Histories of 2..HISTORY shows, each listener's from one of two halves of the shows; the candidate is any show."""
    g = np.random.default_rng(seed)
    ids = np.zeros((n, 2 + HISTORY), dtype=np.int32)
    for i in range(n):
        half = g.integers(0, 2)
        length = g.integers(2, HISTORY + 1)
        ids[i, 2:2 + length] = 2 + half * HALF + g.permutation(HALF)[:length]
    ids[:, 0] = 2 + g.integers(0, SHOWS, n)
    ids[:, 1] = SHOWS + 2 + g.integers(0, 3, n)
    return Features(torch.from_numpy(ids), torch.zeros(n, 1))


def cluster_separation(history_loss: float) -> float:
    """Mean cosine of the show embeddings within a half minus across the halves, after training on labels that
    carry no information (so whatever structure the table has, the histories put there)."""
    torch.manual_seed(0)
    model = build_model(small_config(attention={**ATTENTION, "history_loss": history_loss}), history_layout(), ["t"])
    features, labels = clustered_rows(4096, seed=1), (torch.rand(4096) < 0.3).float()
    fit_first_task(model, features, labels, epochs=5, batch_size=256)
    shows = torch.nn.functional.normalize(model.embedder.table.weight[2:2 + SHOWS].detach(), dim=1)
    cosine = shows @ shows.t()
    same = torch.arange(SHOWS).unsqueeze(0) // HALF == torch.arange(SHOWS).unsqueeze(1) // HALF
    off_diagonal = ~torch.eye(SHOWS, dtype=torch.bool)
    return float(cosine[same & off_diagonal].mean() - cosine[~same].mean())


def test_the_objective_teaches_the_table_which_shows_are_listened_together():
    without, with_loss = cluster_separation(0.0), cluster_separation(1.0)
    print(f"within-half minus across-half cosine: without the objective {without:.3f}, with it {with_loss:.3f}")
    assert with_loss > 0.3
    assert with_loss > without + 0.25


def test_it_changes_neither_the_weights_nor_inference():
    torch.manual_seed(2)
    plain = build_model(small_config(attention={**ATTENTION, "history_loss": 0.0}), history_layout(), ["a", "b"])
    learning = build_model(small_config(attention={**ATTENTION, "history_loss": 2.0}), history_layout(), ["a", "b"])
    learning.load_state_dict(plain.state_dict())  # strict: the same parameters
    features = clustered_rows(64, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(learning.eval()(features), plain.eval()(features))
    # In training its forward value is the same too: only the backward differs.
    torch.testing.assert_close(learning.train()(features), plain.train()(features))


def test_its_gradient_is_the_weighted_loss_gradient_added_to_the_carriers():
    carrier, source = torch.randn(4, requires_grad=True), torch.randn(3, requires_grad=True)
    out = inject(carrier * 2, (source ** 2).sum(), 0.25)
    out.sum().backward()
    torch.testing.assert_close(carrier.grad, torch.full((4,), 2.0))
    torch.testing.assert_close(source.grad, 0.25 * 2 * source.detach())


def test_a_negative_that_is_the_rows_own_show_is_not_counted():
    tokens = torch.randn(8, 1, 4).expand(8, 2, 4)  # every row's bag: one show, twice
    ids, present = torch.full((8, 2), 5), torch.ones(8, 2)
    assert float(colistening_loss(tokens, ids, present)) == 0.0  # every other candidate is an accidental hit
    distinct = torch.arange(16).view(8, 2)
    assert float(colistening_loss(torch.randn(8, 2, 4), distinct, present)) > 0.0


def test_rows_with_fewer_than_two_tokens_have_nothing_to_hold_out():
    present = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert colistening_loss(torch.randn(3, 2, 4), torch.arange(6).view(3, 2), present) is None
