"""The typed batch the models and the training loop see: tensors only, no column names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass(frozen=True)
class Batch:
    """A slice of an encoded impression log; the whole log is a ``Batch`` too.

    ids:        (N, C) int32 rows of the fused embedding table; the first columns hold one id per
                categorical feature, the rest hold bag tokens (0 = padding). See ``FeatureLayout``.
    dense:      (N, D) float32 numeric inputs (log1p-standardised counts, vectors).
    labels:     (N, L) float32 labels, 0 where not observed.
    label_mask: (N, L) bool, True where the label was observed (null labels incur no loss).
    source:     (N,) int64 index into ``Config.sources``.
    tier:       (N,) int64 popularity tier 0..7 of the impression's show.
    format:     (N,) int64 index into ``contract.AD_FORMATS``, len(AD_FORMATS) for null or any
                other value; None when not encoded (batches built by hand). Read only by the
                format mask of ``TaskSet``, never by a model.
    """

    ids: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor
    label_mask: torch.Tensor
    source: torch.Tensor
    tier: torch.Tensor
    format: torch.Tensor | None = field(default=None)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def take(self, index: torch.Tensor) -> "Batch":
        """Rows ``index`` of every field: one gather per tensor, no per-row Python."""
        return Batch(**{f.name: _rows(getattr(self, f.name), index) for f in fields(self)})

    def slice(self, start: int, stop: int) -> "Batch":
        return Batch(**{f.name: None if (v := getattr(self, f.name)) is None else v[start:stop]
                        for f in fields(self)})


def _rows(values: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if values is None else values.index_select(0, index)
