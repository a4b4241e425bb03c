import torch
from torch import nn

from unitarget.config import ModelConfig
from unitarget.models import build_model
from unitarget.models.embeddings import FeatureEmbedder
from unitarget.models.layers import mlp
from tests.helpers import tiny_batch, tiny_layout


def _reference(embedder: FeatureEmbedder, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """The same function written the obvious way with nn.functional.embedding."""
    tokens = nn.functional.embedding(ids.long(), embedder.table.weight, padding_idx=0)
    parts = [tokens[:, : embedder.n_categorical].flatten(1)]
    for start, stop in embedder.bag_slices:
        count = (ids[:, start:stop] != 0).sum(1, keepdim=True).clamp(min=1)
        parts.append(tokens[:, start:stop].sum(1) / count)
    return torch.cat([*parts, dense], dim=1)


def test_fused_lookup_matches_the_obvious_implementation_forward_and_backward():
    layout = tiny_layout()
    batch = tiny_batch(layout, [0, 1, 0, 1, 1])
    batch.features.ids[0, 3:] = 0  # an empty bag
    batch.features.ids[1, 4] = 0  # a shorter bag
    torch.manual_seed(0)
    embedder = FeatureEmbedder(layout, dim=4)
    out = embedder(batch.features.ids, batch.features.dense)
    expected = _reference(embedder, batch.features.ids, batch.features.dense)
    assert torch.allclose(out, expected, atol=1e-6)
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * upstream).sum(), embedder.table.weight)
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), embedder.table.weight)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    assert torch.all(grad[0] == 0)  # padding row never learns
    with torch.inference_mode():  # the inference path (embedding_bag) computes the same values
        assert torch.allclose(embedder(batch.features.ids, batch.features.dense), expected.detach(), atol=1e-6)


def test_model_returns_one_logit_per_task():
    layout = tiny_layout()
    model = build_model(ModelConfig(hidden=(16, 8), tower_hidden=(4,)), layout, ["a", "b", "c"])
    logits = model(tiny_batch(layout, [0] * 7).features)
    assert logits.shape == (7, 3)
    assert model.task_names == ["a", "b", "c"]


def test_towers_run_as_one_give_each_towers_own_logits_and_gradients():
    layout = tiny_layout()
    torch.manual_seed(0)
    for tower_hidden in [(4,), (6, 3)]:
        config = ModelConfig(hidden=(16, 8), tower_hidden=tower_hidden, dropout=0.0, embedding_dropout={}, wide=False)
        model = build_model(config, layout, ["a", "b", "c"])
        features = tiny_batch(layout, [0, 1] * 4).features
        z = model.encoder(model.cross(model.embedder(features.ids, features.dense)), None)
        one_by_one = torch.stack([tower(z) for tower in model.towers.values()], dim=1)
        assert torch.allclose(model(features), one_by_one, atol=1e-6)
        assert torch.allclose(model.forward_tasks(features, [2, 0]), one_by_one[:, [2, 0]], atol=1e-6)
        upstream = torch.randn_like(one_by_one)
        weights = [model.towers["b"].logit.weight, *model.towers["c"].body.parameters()]
        ours = torch.autograd.grad((model(features) * upstream).sum(), weights)
        theirs = torch.autograd.grad((one_by_one * upstream).sum(), weights)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, theirs))


def test_inference_folds_batch_norm_into_the_linear_layers_without_changing_the_function():
    torch.manual_seed(0)
    body = mlp(12, (16, 8), batch_norm=True, dropout=0.1)
    body.train()
    for _ in range(20):  # running statistics away from their start
        body(torch.randn(64, 12) * 3 + 1)
    body.eval()
    x = torch.randn(256, 12)
    with torch.no_grad():
        layer_by_layer = nn.Sequential(*body)(x)
        assert torch.allclose(body(x), layer_by_layer, atol=1e-5)
