"""Shared encoders h_φ(x): map the embedded features to one representation per task.

An encoder is called as ``encoder(x, tasks)`` (``tasks``: indices of the tasks wanted, None for
all) and returns either one (B, H) tensor that every task shares, or a list with one (B, H)
tensor per wanted task (mixture-of-experts encoders gate one mixture per task, and compute only
what the wanted tasks read); ``MultiTaskModel`` accepts both, so the towers never need to know
which encoder they sit on. ``last_shared_weight()`` names the last layer every task reads, for
gradient-balancing methods (GradNorm's W), or None when there is none.
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

    def forward(self, x: torch.Tensor, tasks: Sequence[int] | None = None) -> torch.Tensor:
        """x (B, F) -> (B, H), the one representation every task (any subset ``tasks``) reads."""
        return self.body(x)  # (B, H)

    def last_shared_weight(self) -> nn.Parameter:
        """The last linear layer's weight: the last layer every task reads (GradNorm's W)."""
        return [m for m in self.body if isinstance(m, nn.Linear)][-1].weight
