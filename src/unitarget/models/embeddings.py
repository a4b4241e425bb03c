"""All features of an impression as one flat vector, from one fused embedding lookup."""

from __future__ import annotations

import torch
from torch import nn

from unitarget.data.features import PADDING_ROW, FeatureLayout


class FeatureEmbedder(nn.Module):
    """(ids (B, C), dense (B, D)) -> (B, n_categorical·dim + n_bags·dim + D).

    Every categorical feature and bag shares one ``nn.Embedding`` whose rows are split into
    per-feature blocks (``FeatureLayout.offsets``), so a batch costs a single gather instead of one
    per feature. Bags are mean-pooled over their non-padding tokens; the padding row is held at
    zero, so a plain sum over the bag skips it.
    """

    def __init__(self, layout: FeatureLayout, dim: int, sparse: bool = False) -> None:
        super().__init__()
        self.n_categorical = layout.n_categorical
        self.bag_slices = [(start, stop) for _, start, stop in layout.bags]
        self.table = nn.Embedding(layout.table_rows, dim, padding_idx=PADDING_ROW, sparse=sparse)
        nn.init.normal_(self.table.weight, std=0.05)
        with torch.no_grad():
            self.table.weight[PADDING_ROW].zero_()
        self.output_dim = (self.n_categorical + len(self.bag_slices)) * dim + layout.dense_dim

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        embedded = self.table(ids)  # (B, C, dim)
        batch = ids.shape[0]
        parts = [embedded[:, : self.n_categorical].reshape(batch, -1)]
        for start, stop in self.bag_slices:
            tokens = (ids[:, start:stop] != PADDING_ROW).sum(1, keepdim=True).clamp_(min=1)
            parts.append(embedded[:, start:stop].sum(1) / tokens)  # (B, dim)
        parts.append(dense)
        return torch.cat(parts, dim=1)
