"""A plain PyTorch implementation of the default model, the yardstick for unitarget's training
and prediction speed (``train_predict_speed.py --reference``).

What an engineer would write by hand for the same network: one ``nn.Embedding`` over the same
encoded ids, categorical slots concatenated and bags mean-pooled, the same shared MLP (batch norm)
and towers, masked BCE over the five tasks, ``Adam(fused=True)``, uniformly shuffled batches of
in-memory tensors. No source balancing, no schedule, no validation: only the arithmetic.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from unitarget.data.batch import Batch
from unitarget.data.features import FeatureLayout


class PlainModel(nn.Module):
    """Embedding + concat/mean pooling + MLP + one tower per task, written the obvious way."""

    def __init__(self, layout: FeatureLayout, dim: int, hidden: tuple[int, ...], tower: int, tasks: int) -> None:
        super().__init__()
        self.table = nn.Embedding(layout.table_rows, dim, padding_idx=0)
        self.n_cat = layout.n_categorical
        self.bags = [(start, stop) for _, start, stop in layout.bags]
        layers, width = [], (self.n_cat + len(self.bags)) * dim + layout.dense_dim
        for out in hidden:
            layers += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU()]
            width = out
        self.shared = nn.Sequential(*layers)
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(width, tower), nn.ReLU(), nn.Linear(tower, 1))
                                    for _ in range(tasks))

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(B, T) logits."""
        tokens = self.table(ids.long())
        parts = [tokens[:, : self.n_cat].flatten(1)]
        for start, stop in self.bags:
            present = (ids[:, start:stop] != 0).unsqueeze(-1).float()
            parts.append((tokens[:, start:stop] * present).sum(1) / present.sum(1).clamp(min=1))
        hidden = self.shared(torch.cat([*parts, dense], dim=1))
        return torch.cat([tower(hidden) for tower in self.towers], dim=1)


def reference_epoch(model: PlainModel, data: Batch, task_labels: torch.Tensor, *, batch_size: int, steps: int,
                    seed: int = 0) -> float:
    """Train ``steps`` batches (``task_labels``: each task's label column); examples/s."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
    ids, dense = data.features.ids, data.features.dense
    labels, mask = data.targets.labels, data.targets.label_mask.float()
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        index = order[(step * batch_size) % (len(ids) - batch_size):][:batch_size]
        logits = model(ids[index], dense[index])
        target, weight = labels[index][:, task_labels], mask[index][:, task_labels]
        loss = (nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum()
        loss = loss / weight.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    return steps * batch_size / (time.perf_counter() - started)


@torch.no_grad()
def reference_predict(model: PlainModel, data: Batch, *, slice_rows: int = 8_192) -> float:
    """Score every row in slices; rows/s."""
    model.eval()
    ids, dense = data.features.ids, data.features.dense
    started = time.perf_counter()
    for start in range(0, len(ids), slice_rows):
        torch.sigmoid(model(ids[start:start + slice_rows], dense[start:start + slice_rows]))
    return len(ids) / (time.perf_counter() - started)
