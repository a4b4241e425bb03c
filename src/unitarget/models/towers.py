"""Task towers g_ψt(z): a small MLP per task ending in one logit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unitarget.models.layers import mlp


class Tower(nn.Module):
    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, batch_norm=False, dropout=dropout)
        self.logit = nn.Linear(hidden[-1] if hidden else input_dim, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logit(self.body(z)).squeeze(-1)  # (B,)
