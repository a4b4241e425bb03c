"""Batched inference: probabilities for every row of an encoded log, without gradients."""

from __future__ import annotations

import numpy as np
import torch

from unitarget.data.batch import Batch
from unitarget.models import MultiTaskModel


@torch.inference_mode()
def predict_probabilities(model: MultiTaskModel, data: Batch, batch_size: int = 65_536) -> np.ndarray:
    """(N, T) σ(logits) in task order, computed in slices of ``batch_size`` rows."""
    was_training = model.training
    model.eval()
    out = np.empty((len(data), len(model.towers)), dtype=np.float32)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        out[start:stop] = torch.sigmoid(model(data.slice(start, stop))).numpy()
    model.train(was_training)
    return out
