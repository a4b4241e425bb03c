"""An exponential moving average of the model's weights (``train.ema_decay``), the one validation scores and the
run publishes.

After every optimiser step the average moves toward the live weights: W_ema <- d_n W_ema + (1 - d_n) W with
d_n = min(ema_decay, (1 + n) / (10 + n)) at its n-th update (n = 1 at the second step; the first copies the weights),
the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``. Without it the random initial weights would
keep a weight of ema_decay^N after N steps (0.999^1000 = 0.37: most of a short run's average); with it the weights
averaged are on average a tenth of the steps old until (1 + n) / (10 + n) reaches ema_decay (n = 8,991 at 0.999),
then 1 / (1 - ema_decay) steps old.

Buffers are averaged too (torch's ``AveragedModel(use_buffers=True)``): batch norm's running statistics then describe
activations under weights like the averaged ones, not only the last step's; integer buffers (batches tracked) are
copied. The average is a second copy of the weights, updated over every parameter at every step: O(parameters) per
step, the largest part of a step whose embedding updates are lazy (row-sparse) on large tables.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from unitarget.models import MultiTaskModel

#: TensorFlow's warm-up: d_n <= (1 + n) / (WARMUP + n).
WARMUP = 10


class WeightAverage:
    """The moving average of a model's weights and buffers: ``update`` after each step, ``model`` to score it."""

    def __init__(self, model: MultiTaskModel, decay: float) -> None:
        self.decay = decay
        self._average = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)

    @property
    def model(self) -> MultiTaskModel:
        """The averaged model (a copy of the trained one's modules): what validation scores and the store keeps."""
        return self._average.module

    def update(self, model: MultiTaskModel) -> None:
        """Move the average toward ``model``'s weights after an optimiser step (the first call copies them)."""
        self._average.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        """The average and its update count, for the resumable checkpoint."""
        return self._average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's average."""
        self._average.load_state_dict(state)

    @torch.no_grad()
    def _lerp(self, averages: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        """One update of a group of same-dtype tensors (``AveragedModel``'s ``multi_avg_fn``); ``updates`` counts the
        earlier ones."""
        if not torch.is_floating_point(averages[0]):
            for average, now in zip(averages, current, strict=True):
                average.copy_(now)
            return
        n = int(updates)
        decay = min(self.decay, (1 + n) / (WARMUP + n))
        torch._foreach_lerp_(averages, current, 1.0 - decay)  # as torch's get_ema_multi_avg_fn
