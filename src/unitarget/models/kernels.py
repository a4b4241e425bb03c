"""Dense products on the CPU's fastest fp32 kernel: oneDNN where PyTorch's BLAS takes a slow path.

PyTorch's CPU build sends an fp32 ``nn.Linear`` to MKL's sgemm, and MKL dispatches by CPU vendor: on AMD
processors it runs a generic path at well under half the cores' rate (measured on this project's AMD EPYC
machines: 165 against 387 GFLOP/s for the shared bottom's first layer, 8,192 × 306 × 256; docs/benchmarks.md).
The same build carries oneDNN, which dispatches by instruction set. ``linear`` computes x·Wᵀ + b through oneDNN's
linear primitive, forward and backward, and falls back to ``nn.functional.linear`` wherever that primitive does not
apply (not fp32 on the CPU, autocast, export or compilation, a build without oneDNN, or ``onednn(False)``). Both
compute the same function in fp32; the sums differ only in float rounding order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_enabled = _AVAILABLE


def set_onednn(enabled: bool) -> bool:
    """Use (or stop using) oneDNN for ``linear`` from now on, where the build has it; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled and _AVAILABLE
    return previous


@contextlib.contextmanager
def onednn(enabled: bool) -> Iterator[None]:
    """``set_onednn`` for the block only: tests and benchmarks compare the two kernels this way."""
    previous = set_onednn(enabled)
    try:
        yield
    finally:
        set_onednn(previous)


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` takes the oneDNN path for these operands."""
    return (_enabled and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none") -> torch.Tensor:
    """x (M, K) · weight (N, K)ᵀ + bias through oneDNN, which reads transposed operands without a copy."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], "")


class _OneDnnLinear(torch.autograd.Function):
    """y = x·Wᵀ + b with oneDNN's products in the backward too: ∂x = ∂y·W, ∂W = ∂yᵀ·x, ∂b = Σ ∂y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        # through ``linear`` itself, so a double backward (GradNorm's create_graph) is differentiable too
        grad_x = linear(grad, weight.t()) if ctx.needs_input_grad[0] else None
        grad_weight = linear(grad.t(), x.t()) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, relu: bool = False) -> torch.Tensor:
    """(…, K) · (N, K)ᵀ + (N,) -> (…, N), the function of ``nn.functional.linear`` (then a ReLU with ``relu``) on the
    fastest applicable kernel; without gradients to keep, oneDNN fuses the ReLU into the product (inference)."""
    if not onednn_applies(x, weight):
        out = nn.functional.linear(x, weight, bias)
        return torch.relu_(out) if relu else out
    flat = x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        out = _OneDnnLinear.apply(flat, weight, bias)
        out = torch.relu_(out) if relu else out
    else:
        out = _product(flat, weight, bias, "relu" if relu else "none")
    return out.view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state_dict and initialisation) computed by ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(…, in) -> (…, out)."""
        return linear(x, self.weight, self.bias)
