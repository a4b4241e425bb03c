"""Small building blocks shared by encoders and towers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unitarget.models import kernels


class MLP(nn.Sequential):
    """Linear -> (BatchNorm) -> ReLU -> (Dropout) blocks; in eval mode a batch norm is folded into its linear layer.

    Folding makes inference one matrix product per block instead of a product and then a normalisation pass over
    its output (about 5 % of a prediction's time at 8K rows): W' = W·γ/√(σ² + ε), b' = (b − μ)·γ/√(σ² + ε) + β,
    the same function up to float rounding, computed per call so it can never go stale; a ReLU after it is fused
    into the product (``kernels.linear(..., relu=True)``). Training runs the layers as they are (batch statistics); the
    state_dict is a plain Sequential's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, out); batch norms folded, and each ReLU fused into its product, when not training."""
        if self.training:
            return super().forward(x)
        layers, i = list(self), 0
        while i < len(layers):
            layer = layers[i]
            if not isinstance(layer, nn.Linear):
                x, i = layer(x), i + 1
                continue
            weight, bias, i = layer.weight, layer.bias, i + 1
            if i < len(layers) and isinstance(layers[i], nn.BatchNorm1d):
                norm, i = layers[i], i + 1
                scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
                weight, bias = weight * scale.unsqueeze(1), (bias - norm.running_mean) * scale + norm.bias
            relu = i < len(layers) and isinstance(layers[i], nn.ReLU)
            x, i = kernels.linear(x, weight, bias, relu=relu), i + relu
        return x


def mlp(input_dim: int, hidden: Sequence[int], *, batch_norm: bool, dropout: float) -> MLP:
    """Linear -> (BatchNorm) -> ReLU -> (Dropout) per hidden width; BN after the linear layer, as
    the paper's encoder applies batch norm after each projection."""
    layers: list[nn.Module] = []
    width = input_dim
    for out in hidden:
        layers.append(kernels.Linear(width, out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(out))
        layers.append(nn.ReLU(inplace=True))  # on the fresh output of the linear layer or BN: nothing else reads it
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = out
    return MLP(*layers)
