"""Explicit feature crosses on the embedded input: DCN-v2 (Wang et al. 2021, "DCN V2: Improved
Deep & Cross Network and Practical Lessons for Web-scale Learning to Rank Systems").

Cross layers sit between the embedder and any encoder (stacked DCN-v2: cross, then deep). They keep
the input width F, so the encoder after them is built exactly as without them.
"""

from __future__ import annotations

import torch
from torch import nn

from unitarget.models import kernels


class CrossLayer(nn.Module):
    """x_{l+1} = x_0 ⊙ (W x_l + b) + x_l, with x_0, x_l, x_{l+1} of shape (B, F).

    Full rank: W is (F, F). Low rank (``rank = r``): W = U Vᵀ with U, V of shape (F, r), which
    costs 2·F·r instead of F² multiply-adds per row (DCN-v2, section 5.1). Each layer raises the
    polynomial degree of the crosses by one: L layers express every feature interaction up to
    order L + 1, with the residual x_l keeping the lower orders.
    """

    def __init__(self, dim: int, rank: int | None = None) -> None:
        super().__init__()
        if rank is None:
            self.project = kernels.Linear(dim, dim)  # W x + b
        else:
            # U (Vᵀ x) + b
            self.project = nn.Sequential(kernels.Linear(dim, rank, bias=False), kernels.Linear(rank, dim))
        self.rank = rank

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x_{l+1} = x0 ⊙ (W x_l + b) + x_l: x0 (B, F) the embedded input, x (B, F) the previous layer's output, result
        (B, F)."""
        return x0 * self.project(x) + x  # (B, F)


class CrossNetwork(nn.Module):
    """L cross layers applied in sequence to the embedded input: (B, F) -> (B, F)."""

    def __init__(self, dim: int, layers: int, rank: int | None = None) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("a cross network needs at least one layer")
        self.layers = nn.ModuleList(CrossLayer(dim, rank) for _ in range(layers))
        self.output_dim = dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """Apply every layer with the same x0: x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l, from x_0 = x0; (B, F) -> (B, F)."""
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x  # (B, F)
