"""Task towers g_ψt(z): a small MLP per task ending in one logit, or only the logit's bias (the linear model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from unitarget.models import kernels
from unitarget.models.layers import mlp


class Tower(nn.Module):
    """Task tower g_ψt: an MLP without batch norm, then one logit; (B, H) -> (B,)."""

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, batch_norm=False, dropout=dropout)
        self.logit = kernels.Linear(hidden[-1] if hidden else input_dim, 1)
        self.shape = (input_dim, tuple(hidden), dropout)  # towers of one shape can run as one (stacked_logits)

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


def stackable(towers: Sequence[nn.Module]) -> bool:
    """Whether ``stacked_logits`` can run these towers: ``Tower``s of one shape, with a hidden layer."""
    shapes = {tower.shape if isinstance(tower, Tower) else None for tower in towers}
    return len(shapes) == 1 and None not in shapes and bool(next(iter(shapes))[1])


def stacked_logits(towers: Sequence[Tower], z: torch.Tensor) -> torch.Tensor:
    """(B, T) logits of ``stackable`` towers on one shared input, the same sums as calling each tower.

    The towers run as one: their first layers as one (T·h)-wide matrix product, later layers as one batched
    product, the logits as one weighted sum (one product with a block-diagonal matrix after a single layer). Five
    64-unit towers cost one kernel per layer instead of five, in the forward and the backward; the parameters stay
    each tower's own (the weights are concatenated per call), so checkpoints, fine-tuning and freezing are unchanged.
    """
    n, (_, widths, dropout) = len(towers), towers[0].shape
    layers = [[m for m in tower.body if isinstance(m, nn.Linear)] for tower in towers]
    first = [tower_layers[0] for tower_layers in layers]
    h = kernels.linear(z, torch.cat([m.weight for m in first]), torch.cat([m.bias for m in first]), relu=True)
    h = nn.functional.dropout(h, dropout, towers[0].training)  # (B, T·h)
    if len(widths) == 1:  # the logits as one product with the block-diagonal (T, T·h) matrix of the logit weights
        weight = torch.block_diag(*(tower.logit.weight for tower in towers))
        return kernels.linear(h, weight, torch.cat([tower.logit.bias for tower in towers]))  # (B, T)
    h = h.view(-1, n, widths[0]).transpose(0, 1)  # (T, B, h)
    for depth in range(1, len(widths)):
        weight = torch.stack([tower_layers[depth].weight for tower_layers in layers])  # (T, out, in)
        bias = torch.stack([tower_layers[depth].bias for tower_layers in layers]).unsqueeze(1)  # (T, 1, out)
        h = torch.relu(torch.baddbmm(bias, h, weight.transpose(1, 2)))
        h = nn.functional.dropout(h, dropout, towers[0].training)
    weight = torch.cat([tower.logit.weight for tower in towers])  # (T, h_last)
    bias = torch.cat([tower.logit.bias for tower in towers])  # (T,)
    return (h * weight.unsqueeze(1)).sum(-1).t() + bias  # (B, T)


def _start_at_rate(bias: torch.Tensor, rate: float) -> None:
    rate = min(max(rate, 1e-6), 1 - 1e-6)
    with torch.no_grad():
        bias.fill_(math.log(rate / (1 - rate)))
