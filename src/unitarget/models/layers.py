"""Small building blocks shared by encoders and towers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(input_dim: int, hidden: Sequence[int], *, batch_norm: bool, dropout: float) -> nn.Sequential:
    """Linear -> (BatchNorm) -> ReLU -> (Dropout) per hidden width; BN after the linear layer, as
    the paper's encoder applies batch norm after each projection."""
    layers: list[nn.Module] = []
    width = input_dim
    for out in hidden:
        layers.append(nn.Linear(width, out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(out))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = out
    return nn.Sequential(*layers)
