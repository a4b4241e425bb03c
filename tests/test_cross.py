"""DCN-v2 cross layers: the formula, low rank as a factorised full rank, and their place in the model."""

import pytest
import torch

from unitarget.config import DEFAULT_TASKS, ModelConfig
from unitarget.models import build_model
from unitarget.models.cross import CrossLayer, CrossNetwork
from unitarget.training.tasks import TaskSet
from tests.helpers import tiny_batch, tiny_layout


pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_layer_is_x0_times_wx_plus_b_plus_x():
    layer = CrossLayer(2)
    with torch.no_grad():
        layer.project.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        layer.project.bias.copy_(torch.tensor([0.5, 0.0]))
    x0 = torch.tensor([[1.0, 2.0]])
    x = torch.tensor([[3.0, -1.0]])
    # W x + b = [3 - 2 + 0.5, 1] = [1.5, 1];  x0 * that + x = [1.5 + 3, 2 - 1]
    assert torch.allclose(layer(x0, x), torch.tensor([[4.5, 1.0]]))


def test_low_rank_layer_is_the_full_rank_layer_with_w_equal_u_v_transposed():
    torch.manual_seed(0)
    low, full = CrossLayer(6, rank=2), CrossLayer(6)
    u, v = low.project[1].weight, low.project[0].weight  # (6, 2), (2, 6)
    with torch.no_grad():
        full.project.weight.copy_(u @ v)
        full.project.bias.copy_(low.project[1].bias)
    x0, x = torch.randn(5, 6), torch.randn(5, 6)
    assert torch.allclose(low(x0, x), full(x0, x), atol=1e-6)
    assert sum(p.numel() for p in low.parameters()) == 2 * 6 * 2 + 6


@pytest.mark.parametrize("rank", [None, 3])
def test_network_keeps_the_width_and_each_layer_adds_one_order_of_interaction(rank):
    torch.manual_seed(0)
    net = CrossNetwork(8, layers=2, rank=rank)
    for layer in net.layers:  # without biases the output is a sum of homogeneous terms
        torch.nn.init.zeros_(layer.project[-1].bias if rank else layer.project.bias)
    x = torch.randn(4, 8)
    assert net(x).shape == (4, 8)
    # f(a x) = a x + a^2 (..) + a^3 (..): the third finite difference in a is non-zero, the fourth is zero
    values = torch.stack([net(a * x) for a in (0.0, 1.0, 2.0, 3.0, 4.0)])
    third = values[3] - 3 * values[2] + 3 * values[1] - values[0]
    fourth = values[4] - 4 * values[3] + 6 * values[2] - 4 * values[1] + values[0]
    assert third.abs().max() > 1e-3
    assert fourth.abs().max() < 1e-3


def test_default_model_has_no_cross_layers_and_unchanged_parameter_names():
    layout = tiny_layout()
    model = build_model(ModelConfig(hidden=(8,), tower_hidden=(4,)), layout, ["a"])
    assert not any(name.startswith("cross.") for name in model.state_dict())
    assert isinstance(model.cross, torch.nn.Identity)


@pytest.mark.parametrize("encoder", ["shared_bottom", "mmoe", "ple", "camoe"])
def test_cross_layers_sit_before_any_encoder_and_the_source_mask_still_cuts_the_tower(encoder):
    torch.manual_seed(0)
    layout = tiny_layout()
    tasks = TaskSet(DEFAULT_TASKS, ("ads", "promotions"))
    config = ModelConfig(encoder=encoder, hidden=(8,), tower_hidden=(4,),
                         experts={"hidden": (8,), "shared": 2},
                         cross={"layers": 2, "rank": 4})
    model = build_model(config, layout, tasks.names)
    batch = tiny_batch(layout, [0] * 6, n_labels=len(tasks.labels))  # ad impressions only
    tasks.losses(model(batch.features), batch.targets).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cross.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.towers["promo_stream"].parameters())
    assert any(p in set(model.shared_parameters()) for p in model.cross.parameters())
