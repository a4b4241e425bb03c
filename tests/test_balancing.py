"""Loss balancing strategies: each trains, and each does what its paper says to the gradients."""

import pytest
import torch
from torch import nn

from unitarget.config import merge
from unitarget.models.colistening import inject
from unitarget.pipeline import train
from unitarget.training.balancing import GradNorm, PCGrad, SharedParameters, StaticWeights, UncertaintyWeighting


def _two_task_problem():
    """A shared weight vector w and two task losses whose gradients conflict."""
    w = nn.Parameter(torch.tensor([1.0, 1.0]))
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.5])
    return w, torch.stack([(w @ a), (w @ b)])  # ∇_w L0 = a, ∇_w L1 = b, a·b < 0


def test_static_weights_scale_each_task():
    w, losses = _two_task_problem()
    StaticWeights(torch.tensor([2.0, 0.0])).backward(losses, SharedParameters([w], w))
    assert torch.allclose(w.grad, torch.tensor([2.0, 0.0]))


def test_pcgrad_removes_the_conflicting_component():
    w, losses = _two_task_problem()
    PCGrad(torch.ones(2)).backward(losses, SharedParameters([w], w))
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.5])
    a_proj = a - (a @ b) / (b @ b) * b
    b_proj = b - (b @ a) / (a @ a) * a
    assert torch.allclose(w.grad, a_proj + b_proj, atol=1e-6)
    assert a_proj @ b >= -1e-6 and b_proj @ a >= -1e-6


def test_pcgrad_adds_a_gradient_the_backward_injects_for_no_task_once_and_unprojected():
    w, losses = _two_task_problem()
    carried = inject(losses, (w ** 2).sum(), 0.5)  # an auxiliary objective 0.5·‖w‖², as models.colistening adds
    PCGrad(torch.ones(2)).backward(carried, SharedParameters([w], w))
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.5])
    a_proj = a - (a @ b) / (b @ b) * b
    b_proj = b - (b @ a) / (a @ a) * a
    assert torch.allclose(w.grad, a_proj + b_proj + 0.5 * 2 * w.detach(), atol=1e-6)


def test_uncertainty_weighting_learns_a_smaller_weight_for_the_noisier_task():
    balancer = UncertaintyWeighting(torch.ones(2))
    optimizer = torch.optim.SGD(balancer.parameters(), lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        balancer.backward(torch.tensor([0.1, 2.0]), SharedParameters([], None))
        optimizer.step()
    weights = torch.exp(-balancer.log_variance)
    assert weights[0] > weights[1]
    assert torch.allclose(weights, torch.tensor([10.0, 0.5]), rtol=0.05)  # optimum: e^{-s} = 1/L


def test_gradnorm_moves_weight_towards_the_task_with_the_smaller_gradient():
    w = nn.Parameter(torch.eye(2))
    x = torch.tensor([1.0, 1.0])
    balancer = GradNorm(torch.ones(2), alpha=0.0)
    losses = torch.stack([(w @ x)[0] * 10.0, (w @ x)[1]])  # task 0's gradient is 10x larger
    balancer.backward(losses, SharedParameters([w], w))
    assert balancer.task_weights.grad[0] > 0 > balancer.task_weights.grad[1]
    with torch.no_grad():
        balancer.task_weights -= 0.1 * balancer.task_weights.grad
    balancer.after_step()
    assert torch.isclose(balancer.task_weights.sum(), torch.tensor(2.0))
    assert balancer.task_weights[1] > balancer.task_weights[0]


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm", "pcgrad"])
def test_every_method_trains_the_unified_model(method, tiny_log, tmp_path, fast_config):
    config = merge(fast_config, {"loss": {"method": method}, "train": {"max_epochs": 1}})
    trained = train(tiny_log, tmp_path / "run", config)
    assert trained.evaluate(tiny_log).ap("ads_stream") > 0


def test_gradnorm_balances_at_the_layer_the_model_names_for_every_encoder():
    from unitarget.config import ModelConfig
    from unitarget.models import build_model
    from unitarget.models.experts import SHARED, ExpertBank

    from tests.helpers import tiny_layout

    tasks = ["a", "b"]
    shared_bottom = build_model(ModelConfig(), tiny_layout(), tasks)
    assert shared_bottom.last_shared_weight() is [m for m in shared_bottom.encoder.body
                                                  if isinstance(m, nn.Linear)][-1].weight
    mmoe = build_model(ModelConfig(encoder="mmoe", experts={"hidden": [8, 4]}), tiny_layout(), tasks)
    bank = mmoe.encoder.levels[-1].banks[SHARED]
    assert isinstance(bank, ExpertBank) and mmoe.last_shared_weight() is bank.weights[-1]  # not a bias
    mmoe.freeze(except_towers=["a"])
    assert mmoe.last_shared_weight() is None  # a frozen encoder has no shared layer left to balance
