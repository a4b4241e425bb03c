"""The directional mask: ad impressions never update promotion tasks; null labels never count."""

import torch

from unitarget.config import DEFAULT_TASKS, ModelConfig
from unitarget.models import build_model
from unitarget.training.tasks import TaskSet
from tests.helpers import tiny_batch, tiny_layout

SOURCES = ("ads", "promotions")
ADS, PROMOS = 0, 1


def _tower_grads(source_rows: list[int], tasks=DEFAULT_TASKS):
    torch.manual_seed(0)
    layout = tiny_layout()
    task_set = TaskSet(tasks, SOURCES)
    model = build_model(ModelConfig(hidden=(8,), tower_hidden=(4,)), layout, task_set.names)
    batch = tiny_batch(layout, source_rows, n_labels=len(task_set.labels))
    model.train()
    task_set.losses(model(batch.features), batch.targets).sum().backward()
    return {
        name: sum(float(p.grad.abs().sum()) for p in tower.parameters() if p.grad is not None)
        for name, tower in model.towers.items()
    }, model


def test_ad_impression_gives_no_gradient_to_the_promotion_stream_tower():
    grads, model = _tower_grads([ADS] * 4)
    assert grads["promo_stream"] == 0.0
    assert grads["ad_stream"] > 0.0
    # the shared encoder still learns from ads
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_promotion_impression_updates_both_stream_towers():
    grads, _ = _tower_grads([PROMOS] * 4)
    assert grads["promo_stream"] > 0.0
    assert grads["ad_stream"] > 0.0


def test_source_mask_matches_the_contract_default():
    task_set = TaskSet(DEFAULT_TASKS, SOURCES)
    mask = dict(zip(task_set.names, task_set.source_mask.T.tolist()))
    assert mask["promo_stream"] == [0.0, 1.0]  # ads, promotions
    assert all(mask[t] == [1.0, 1.0] for t in ("ad_stream", "click", "like", "follow"))


def test_unobserved_labels_incur_no_loss_and_are_not_read_as_negative():
    layout = tiny_layout()
    task_set = TaskSet(DEFAULT_TASKS, SOURCES)
    batch = tiny_batch(layout, [PROMOS] * 3, n_labels=len(task_set.labels))
    like = task_set.labels.index("like")
    batch.targets.label_mask[:, like] = False
    logits = torch.full((3, len(task_set)), 3.0, requires_grad=True)
    losses = task_set.losses(logits, batch.targets)
    assert losses[task_set.names.index("like")] == 0.0
    losses.sum().backward()
    assert torch.all(logits.grad[:, task_set.names.index("like")] == 0)


def test_loss_is_the_batch_mean_of_masked_bce():
    task_set = TaskSet(DEFAULT_TASKS, SOURCES)
    batch = tiny_batch(tiny_layout(), [ADS, PROMOS], n_labels=len(task_set.labels))
    logits = torch.zeros(2, len(task_set))
    losses = task_set.losses(logits, batch.targets)
    ln2 = torch.log(torch.tensor(2.0))
    # promo_stream: only the promotion row counts, divided by the batch size 2
    assert torch.isclose(losses[0], ln2 / 2)
    assert torch.isclose(losses[1], ln2)
