"""Small builders shared by tests: a hand-made encoded batch and layout, no data files."""

from __future__ import annotations

import torch

from dataclasses import replace

from unitarget.data.batch import Batch, Features, Targets
from unitarget.data.features import FeatureLayout
from unitarget.training.hooks import SilentHooks


def tiny_layout(n_categorical: int = 3, bag_len: int = 2, rows_per_feature: int = 5, dense: int = 1) -> FeatureLayout:
    categorical = tuple(f"c{j}" for j in range(n_categorical))
    offsets = {name: 1 + j * rows_per_feature for j, name in enumerate(categorical)}
    offsets["bag"] = 1 + n_categorical * rows_per_feature
    return FeatureLayout(
        categorical=categorical,
        bags=(("bag", n_categorical, n_categorical + bag_len),),
        dense=(("d", dense),),
        offsets=offsets,
        table_rows=1 + (n_categorical + 1) * rows_per_feature,
        groups={**{c: "user" for c in categorical}, "bag": "content", "d": "content"},
    )


def tiny_batch(layout: FeatureLayout, sources: list[int], n_labels: int = 4, seed: int = 0) -> Batch:
    """Random ids inside each feature's block, every label observed, the given source per row."""
    g = torch.Generator().manual_seed(seed)
    n = len(sources)
    ids = torch.zeros(n, layout.ids_width, dtype=torch.int32)
    for j, name in enumerate(layout.categorical):
        ids[:, j] = layout.offsets[name] + torch.randint(0, 5, (n,), generator=g, dtype=torch.int32)
    name, start, stop = layout.bags[0]
    ids[:, start:stop] = layout.offsets[name] + torch.randint(0, 5, (n, stop - start), generator=g, dtype=torch.int32)
    features = Features(ids=ids, dense=torch.randn(n, layout.dense_dim, generator=g))
    return Batch(features, Targets(
        labels=torch.randint(0, 2, (n, n_labels), generator=g).float(),
        label_mask=torch.ones(n, n_labels, dtype=torch.bool),
        source=torch.tensor(sources, dtype=torch.int64),
        tier=torch.zeros(n, dtype=torch.int64),
    ))


def with_formats(batch: Batch, formats: list[int]) -> Batch:
    """``batch`` with these format indices (``tiny_batch`` leaves the format unencoded)."""
    return Batch(batch.features, replace(batch.targets, format=torch.tensor(formats)))


class StopAt(SilentHooks):
    """Training hooks that Ctrl-C right after optimiser step ``step`` of epoch ``epoch`` (on every rank at once under
    DDP): an interrupted run to resume."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        if (epoch, step) == (self.epoch, self.step):
            raise KeyboardInterrupt
