"""Task towers g_ψt(z): a small MLP per task ending in one logit, or only the logit's bias (the linear model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from unitarget.models.layers import mlp


class Tower(nn.Module):
    """Task tower g_ψt: an MLP without batch norm, then one logit; (B, H) -> (B,)."""

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, batch_norm=False, dropout=dropout)
        self.logit = nn.Linear(hidden[-1] if hidden else input_dim, 1)

    def start_at_rate(self, rate: float) -> None:
        """Set the output bias to the base rate's log-odds, so training starts from the prior
        instead of p = 0.5 (at a 1.5 % stream rate that start costs hundreds of steps)."""
        _start_at_rate(self.logit.bias, rate)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, H) shared representation -> (B,) logit of this task."""
        return self.logit(self.body(z)).squeeze(-1)  # (B,)


class BiasTower(nn.Module):
    """The linear model's tower: logit_t = z + b_t, (B, 1) -> (B,). Its input is already the task's weighted feature
    sum (``models.linear.LinearTerms``), so only the bias is left; a weight here would make the model bilinear."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def start_at_rate(self, rate: float) -> None:
        """Start the bias at the base rate's log-odds, as ``Tower`` does: with every weight at zero the model then
        starts at the prior, the maximum-likelihood constant model."""
        _start_at_rate(self.bias, rate)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 1) weighted feature sum of this task -> (B,) logit."""
        return z.squeeze(-1) + self.bias  # (B,)


def _start_at_rate(bias: torch.Tensor, rate: float) -> None:
    rate = min(max(rate, 1e-6), 1 - 1e-6)
    with torch.no_grad():
        bias.fill_(math.log(rate / (1 - rate)))
