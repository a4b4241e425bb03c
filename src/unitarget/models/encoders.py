"""Shared encoders h_φ(x): map the embedded features to one representation per task.

An encoder returns either one (B, H) tensor that every task shares, or a list with one (B, H)
tensor per task (mixture-of-experts encoders gate one mixture per task); ``MultiTaskModel`` accepts
both, so the towers never need to know which encoder they sit on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unitarget.models.layers import mlp


class SharedBottom(nn.Module):
    """z = MLP(x), shared by all tasks (the paper's production encoder, Fig. 2C)."""

    def __init__(
        self, input_dim: int, hidden: Sequence[int], *, batch_norm: bool, dropout: float
    ) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, batch_norm=batch_norm, dropout=dropout)
        self.output_dim = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, H)
