"""Loss balancing strategies: how per-task losses become the one scalar that is backpropagated.

A strategy is composed with any architecture. ``StaticWeights`` is the paper's Σ_t λ_t L_t
(λ_t = 1 in its deployment).
"""

from __future__ import annotations

from typing import Protocol

import torch


class LossBalancer(Protocol):
    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        """(T,) per-task losses -> scalar loss to backpropagate."""
        ...


class StaticWeights:
    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights

    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        return (self.weights * task_losses).sum()
