"""The typed batch the models and the training loop see: tensors only, no column names.

A ``Batch`` is two halves with different readers: ``Features`` is everything a model may read
(so a model cannot peek at a label, and export or serving builds features without inventing
labels), ``Targets`` is what the tasks' masked losses, the samplers and evaluation read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TypeVar

import torch

_T = TypeVar("_T")


@dataclass(frozen=True)
class Features:
    """A model's inputs.

    ids:   (N, C) int32 rows of the fused embedding table; the first columns hold one id per
           categorical feature, the rest hold bag tokens (0 = padding). See ``FeatureLayout``.
    dense: (N, D) float32 numeric inputs (log1p-standardised counts, vectors).
    """

    ids: torch.Tensor
    dense: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def take(self, index: torch.Tensor) -> "Features":
        """Rows ``index`` of ``ids`` and ``dense`` (one ``index_select`` each): a mini-batch of a sampler's indices."""
        return _take(self, index)

    def slice(self, start: int, stop: int) -> "Features":
        """Rows ``start:stop`` as views (no copy): an inference slice."""
        return _slice(self, start, stop)


@dataclass(frozen=True)
class Targets:
    """What the tasks learn from and evaluation groups by; never read by a model.

    labels:     (N, L) float32 labels, 0 where not observed.
    label_mask: (N, L) bool, True where the label was observed (null labels incur no loss).
    source:     (N,) int64 index into ``Config.sources``.
    tier:       (N,) int64 popularity tier 0..7 of the impression's show.
    format:     (N,) int64 index into ``contract.AD_FORMATS``, len(AD_FORMATS) for null or any
                other value; None when not encoded (targets built by hand). Read only by the
                format mask of ``TaskSet``.
    weight:     (N,) float32 loss weight of each row, None = 1 everywhere. Set on training batches
                by ``sampling.mode = "reweight"`` (``training.batches.WeightedBatches``), never stored.
    """

    labels: torch.Tensor
    label_mask: torch.Tensor
    source: torch.Tensor
    tier: torch.Tensor
    format: torch.Tensor | None = field(default=None)
    weight: torch.Tensor | None = field(default=None)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def take(self, index: torch.Tensor) -> "Targets":
        """Rows ``index`` of every target tensor; a ``format`` or ``weight`` of None stays None."""
        return _take(self, index)

    def slice(self, start: int, stop: int) -> "Targets":
        """Rows ``start:stop`` of every target tensor as views; a ``format`` or ``weight`` of None stays None."""
        return _slice(self, start, stop)


@dataclass(frozen=True)
class Batch:
    """A slice of an encoded impression log (the whole log is a ``Batch`` too): the same rows of
    ``features`` and ``targets``."""

    features: Features
    targets: Targets

    def __len__(self) -> int:
        return len(self.features)

    def take(self, index: torch.Tensor) -> "Batch":
        """Rows ``index`` of every tensor: one gather per tensor, no per-row Python."""
        return Batch(self.features.take(index), self.targets.take(index))

    def slice(self, start: int, stop: int) -> "Batch":
        """Rows ``start:stop`` of features and targets as views, so both halves stay row-aligned."""
        return Batch(self.features.slice(start, stop), self.targets.slice(start, stop))


def concat(parts: Sequence[_T]) -> _T:
    """One ``Features`` or ``Targets`` of the rows of ``parts`` in order (a ``format`` of None stays None)."""
    first = parts[0]
    return type(first)(**{f.name: None if getattr(first, f.name) is None
                          else torch.cat([getattr(p, f.name) for p in parts]) for f in fields(first)})


def _take(item: _T, index: torch.Tensor) -> _T:
    """``item`` (a dataclass of tensors) with rows ``index`` of each tensor; None stays None."""
    return type(item)(**{f.name: None if (v := getattr(item, f.name)) is None else v.index_select(0, index)
                         for f in fields(item)})


def _slice(item: _T, start: int, stop: int) -> _T:
    return type(item)(**{f.name: None if (v := getattr(item, f.name)) is None else v[start:stop]
                         for f in fields(item)})
