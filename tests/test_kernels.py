import pytest
import torch
from torch import nn

from unitarget.models import kernels
from unitarget.models.layers import mlp

pytestmark = pytest.mark.skipif(not kernels.onednn_applies(torch.zeros(1), torch.zeros(1)),
                                reason="this PyTorch build has no oneDNN linear primitive")


@pytest.mark.parametrize("shape", [(64, 30, 16), (7, 5, 1), (3, 4, 6, 9)])
def test_linear_matches_nn_functional_linear_in_values_and_gradients(shape):
    *lead, k, n = shape
    torch.manual_seed(0)
    x = torch.randn(*lead, k, requires_grad=True)
    weight, bias = torch.randn(n, k, requires_grad=True), torch.randn(n, requires_grad=True)
    upstream = torch.randn(*lead, n)
    out = kernels.linear(x, weight, bias)
    grads = torch.autograd.grad((out * upstream).sum(), (x, weight, bias))
    expected = nn.functional.linear(x, weight, bias)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (x, weight, bias))
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.allclose(grad, expected_grad, atol=1e-4)


def test_transposed_operands_are_read_correctly():
    torch.manual_seed(1)
    x, weight = torch.randn(40, 12).t(), torch.randn(40, 9)  # both (·, 40), neither contiguous in that shape
    assert torch.allclose(kernels.linear(x, weight.t()), x @ weight, atol=1e-5)


def test_the_oneDNN_path_is_taken_and_can_be_switched_off():
    x, weight = torch.randn(8, 4), torch.randn(3, 4)
    assert kernels.onednn_applies(x, weight)
    with kernels.onednn(False):
        assert not kernels.onednn_applies(x, weight)
    assert kernels.onednn_applies(x, weight)
    assert not kernels.onednn_applies(x.double(), weight.double())  # only fp32 goes to oneDNN
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernels.onednn_applies(x, weight)  # autocast keeps its own casting


def test_mlp_in_eval_with_fused_relu_computes_the_unfused_function():
    torch.manual_seed(2)
    block = mlp(10, [16, 8], batch_norm=True, dropout=0.1)
    block(torch.randn(256, 10))  # running statistics away from their start
    block.eval()
    x = torch.randn(32, 10)
    with torch.no_grad():
        fused = block(x)
        with kernels.onednn(False):
            plain = nn.Sequential(*block)(x)
    assert torch.allclose(fused, plain, atol=1e-5)


def test_second_order_gradients_match_nn_functional_linear():
    torch.manual_seed(3)  # GradNorm differentiates gradient norms with respect to the weights
    x, weight = torch.randn(16, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)

    def second_order(product):
        (grad_x,) = torch.autograd.grad(product(x, weight).pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.norm(), weight)[0]

    assert torch.allclose(second_order(kernels.linear), second_order(nn.functional.linear), atol=1e-5)
