"""Regularisers of the id embeddings, per feature group: decay of the rows a batch reads, and feature dropout.

An id embedding is fitted from the rows its id appears in, so a rare id's row fits its few impressions
(overfitting) while the dense layers see enough data. Two switches act on the table only, per feature group
(user, content, context, creative; ``FeatureLayout.groups``), and only in training:

- **Decay** (``model.embedding_decay``): the gradient of  Ω = (1/B) Σ_x Σ_c λ_g(c) · w_c(x) · ||e_{ids[x, c]}||²
  over the batch's tokens, w_c the token's pooling weight (1 for a single id, 1/len for a bag's tokens, 0 for
  padding). A row decays in proportion to how often the batch reads it (frequency-aware), and a row the batch does
  not read gets no decay: with ``optim.embedding_updates = "lazy"`` it is left exactly as it was, with dense Adam it
  receives a zero gradient (Adam may still move it along its earlier momentum, as without decay). The gradient is
  added inside the lookup's backward (``models.embeddings``), so it is part of the one backward pass (DDP averages
  it with the rest) and needs no loss term; the logged loss is the tasks' loss, without Ω.
- **Feature dropout** (``model.embedding_dropout``): each feature of group g reads as absent with probability p_g,
  independently per row and feature, which is what the encoder writes for a feature missing at scoring time: a
  single id's out-of-vocabulary row, an empty bag. The model learns not to lean on one id, and the OOV row (what
  serving reads for an unseen id) is trained on every id's rows, not only on the rare ones'.

Both are off (no tensor, no random draw) for groups not listed, so a configuration without them trains exactly as
before. Inference, export and serving never apply them: dropout runs in training mode only, and the decay exists
only in the backward pass.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from unitarget.data.encoders import PADDING_ROW
from unitarget.data.features import FeatureLayout


class EmbeddingRegulariser(nn.Module):
    """Per-column decay λ (C,) for the lookup, and per-slot dropout of the ids (B, C) before it, from ``decay`` and
    ``dropout`` keyed by group name (``FeatureLayout.groups``' values); buffers only, none saved in the ``state_dict``
    (a checkpoint or model file is the same with or without it)."""

    def __init__(self, layout: FeatureLayout, decay: Mapping[str, float], dropout: Mapping[str, float]) -> None:
        super().__init__()
        slots = [*((name, j, j + 1) for j, name in enumerate(layout.categorical)), *layout.bags]
        column_decay = torch.zeros(layout.ids_width)
        for name, start, stop in slots:
            column_decay[start:stop] = decay.get(layout.groups[name], 0.0)
        # (C,) λ of each ids column; None when no group decays
        self.register_buffer("decay", column_decay if bool(column_decay.any()) else None, persistent=False)
        rates = torch.tensor([dropout.get(layout.groups[name], 0.0) for name, _, _ in slots])
        self.register_buffer("slot_rate", rates, persistent=False)  # (K,) p of each slot
        # A dropped slot's ids: a single id's OOV row (local row 0 of its block), padding for every token of a bag.
        absent = torch.full((layout.ids_width,), PADDING_ROW, dtype=torch.int64)
        absent[:layout.n_categorical] = torch.tensor([layout.offsets[n] for n in layout.categorical], dtype=torch.int64)
        self.register_buffer("absent", absent, persistent=False)
        column_slot = torch.zeros(layout.ids_width, dtype=torch.int64)
        for k, (_, start, stop) in enumerate(slots):
            column_slot[start:stop] = k
        self.register_buffer("column_slot", column_slot, persistent=False)
        self.drops = bool(rates.any())

    def drop(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, C) ids with each row's slots dropped with their group's probability, in training mode; ``ids`` itself
        otherwise (or when no group has a dropout rate)."""
        if not (self.training and self.drops):
            return ids
        dropped = torch.rand(ids.shape[0], len(self.slot_rate)) < self.slot_rate  # (B, K)
        return torch.where(dropped.index_select(1, self.column_slot), self.absent.to(ids.dtype), ids)

    def training_decay(self) -> torch.Tensor | None:
        """(C,) λ per ids column for the lookup's backward in training mode; None otherwise or when nothing decays."""
        return self.decay if self.training else None


def decay_scale(decay: torch.Tensor, token_weight: torch.Tensor) -> torch.Tensor:
    """(B·C,) ∂Ω/∂e per token, over the token's row e: 2 λ_c w_c(x) / B (0 on the columns without decay)."""
    return (token_weight * decay * (2 / token_weight.shape[0])).reshape(-1)


def add_decay_gradient(token_grad: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor,
                       scale: torch.Tensor) -> torch.Tensor:
    """``token_grad`` (tokens, dim) plus, in place, each token's decay gradient ``scale`` · e_row (``decay_scale``);
    the lookup's scatter then sums it into the table rows with the task gradient. Only the tokens that decay are
    gathered."""
    decaying = scale.nonzero().squeeze(1)
    values = weight.index_select(0, rows.index_select(0, decaying)).mul_(scale.index_select(0, decaying).unsqueeze(1))
    return token_grad.index_add_(0, decaying, values)
