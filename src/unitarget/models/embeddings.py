"""All features of an impression as one flat vector, from one fused embedding lookup."""

from __future__ import annotations

import torch
from torch import nn

from unitarget.data.encoders import PADDING_ROW
from unitarget.data.features import FeatureLayout
from unitarget.models.attention import TargetAttention
from unitarget.models.regularisers import EmbeddingRegulariser, add_decay_gradient, decay_scale


class _PooledLookup(torch.autograd.Function):
    """out[b, k] = Σ_{c : slot[c] = k} w[b, c] · weight[ids[b, c]]  — lookup and pooling in one op.

    Every single column is its own slot (w = 1); the tokens of a bag share one slot with
    w = 1/len(bag) (0 on padding), which makes the slot the bag's mean. The forward is one
    ``embedding_bag`` call over the flattened ids (every slot of every row a bag of consecutive
    columns), so no (B, C, dim) intermediate is built. The backward scatters only the tokens that
    are not padding (about half of the default world's, whose history bags are half empty) into the
    table with one ``index_add_``; the embedding_bag's own backward, and PyTorch's embedding backward
    plus slicing and pooling, cost about 2-3x more per step on 2 CPU cores (docs/benchmarks.md).
    With ``decay`` (C,) the backward adds the gradient of the decay of the rows read
    (``models.regularisers``) to the tokens' before that scatter.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, token_weight: torch.Tensor,
                slot: torch.Tensor, n_single: int, bag_slices: list[tuple[int, int]],
                sparse_grad: bool, decay: torch.Tensor | None) -> torch.Tensor:
        batch = ids.shape[0]
        slots = n_single + len(bag_slices)
        flat = ids.reshape(-1).long()  # int64: index_add_ takes a ~3x slower path with int32 indices
        weights = token_weight.reshape(-1)
        starts = torch.tensor([*range(n_single), *(start for start, _ in bag_slices)], dtype=torch.int64)
        out = slot_sums(weight, ids, token_weight, starts)
        kept = (flat != PADDING_ROW).nonzero().squeeze(1)
        out_rows = (torch.arange(batch).mul_(slots).unsqueeze(1) + slot).reshape(-1)  # token -> row of out
        decayed = () if decay is None else (weight, decay_scale(decay, token_weight).index_select(0, kept))
        ctx.save_for_backward(flat[kept], weights[kept], out_rows[kept], *decayed)
        ctx.rows, ctx.sparse_grad = weight.shape[0], sparse_grad
        return out.view(batch, slots, weight.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, weights, out_rows, *decayed = ctx.saved_tensors
        dim = grad.shape[-1]
        token_grad = grad.reshape(-1, dim).index_select(0, out_rows).mul_(weights.unsqueeze(1))  # (tokens, D)
        if decayed:
            add_decay_gradient(token_grad, decayed[0], rows, decayed[1])
        if ctx.sparse_grad:
            return _row_sparse_grad(token_grad, rows, ctx.rows), None, None, None, None, None, None, None
        weight_grad = grad.new_zeros(ctx.rows, dim).index_add_(0, rows, token_grad)
        return weight_grad, None, None, None, None, None, None, None


def slot_sums(weight: torch.Tensor, ids: torch.Tensor, token_weight: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """(B·K, dim): each slot's weighted sum of its rows, in one ``embedding_bag`` call. Every slot of every row is a
    bag of consecutive columns of the flattened ids, beginning at ``starts`` (K columns); nothing (B, C, dim) is
    materialised."""
    batch, width = ids.shape
    offsets = (torch.arange(batch).mul_(width).unsqueeze(1) + starts).reshape(-1)
    # No padding_idx: the padding row is zero and weighs 0, and that argument takes a ~4x slower kernel.
    return nn.functional.embedding_bag(ids.reshape(-1).long(), weight, offsets, mode="sum",
                                       per_sample_weights=token_weight.reshape(-1))


#: Above this many table rows per token, a row-sparse gradient is summed over the batch's unique
#: rows (a sort of the tokens); below it, in a dense table-sized buffer (cheaper when the batch
#: touches a large share of a small table, as the default world's does).
_UNIQUE_ABOVE_ROWS_PER_TOKEN = 4


def _row_sparse_grad(token_grad: torch.Tensor, flat: torch.Tensor, rows: int) -> torch.Tensor:
    """The table gradient on the rows the batch's tokens touched (padding excluded), as a coalesced
    sparse tensor for row-wise (lazy) optimizer updates. Its cost follows the batch, not the table,
    once the table is large: a 10 M-row table needs no table-sized buffer per step."""
    dim = token_grad.shape[1]
    if rows > _UNIQUE_ABOVE_ROWS_PER_TOKEN * flat.numel():
        index, inverse = torch.unique(flat, sorted=True, return_inverse=True)
        values = token_grad.new_zeros(len(index), dim).index_add_(0, inverse, token_grad)
    else:
        dense = token_grad.new_zeros(rows, dim).index_add_(0, flat, token_grad)
        touched = torch.zeros(rows, dtype=torch.bool)
        touched[flat] = True
        index = touched.nonzero().squeeze(1)
        values = dense.index_select(0, index)
    keep = index != PADDING_ROW
    return torch.sparse_coo_tensor(index[keep].unsqueeze(0), values[keep], (rows, dim), is_coalesced=True,
                                   check_invariants=False)


def pooled_lookup(weight: torch.Tensor, ids: torch.Tensor, token_weight: torch.Tensor, slot: torch.Tensor,
                  n_single: int, bag_slices: list[tuple[int, int]], sparse_grad: bool = False,
                  decay: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K, dim): the first ``n_single`` columns of ``ids`` each their own slot, then each bag of
    ``bag_slices`` summed with ``token_weight``; the backward is one scatter into the table (a
    row-sparse gradient with ``sparse_grad``), with the decay of the rows read added when ``decay``
    (C,) gives λ per column. The embedder and the linear baseline both read their tables through it."""
    return _PooledLookup.apply(weight, ids, token_weight, slot, n_single, bag_slices, sparse_grad, decay)


class FeatureEmbedder(nn.Module):
    """(ids (B, C), dense (B, D)) -> (B, (n_categorical + n_bags)·dim [+ attention.output_dim] + D).

    Every categorical feature and bag shares one embedding table whose rows are split into
    per-feature blocks (``FeatureLayout.offsets``), so a batch costs one gather instead of one per
    feature. Bags are mean-pooled over their non-padding tokens; with ``attention`` (DIN target
    attention, ``models.attention``) the attended bags are also pooled against the candidate, read
    from the same table, and that output follows the pooled slots.
    """

    def __init__(self, layout: FeatureLayout, dim: int, attention: TargetAttention | None = None,
                 regulariser: EmbeddingRegulariser | None = None) -> None:
        super().__init__()
        self.table = nn.Embedding(layout.table_rows, dim, padding_idx=PADDING_ROW)
        nn.init.normal_(self.table.weight, std=0.05)
        with torch.no_grad():
            self.table.weight[PADDING_ROW].zero_()
        n_cat = layout.n_categorical
        slot = list(range(n_cat))
        bag_mask = torch.zeros(layout.ids_width, dtype=torch.bool)
        for k, (_, start, stop) in enumerate(layout.bags):
            slot += [n_cat + k] * (stop - start)
            bag_mask[start:stop] = True
        self.n_categorical = n_cat
        self.register_buffer("slot", torch.tensor(slot, dtype=torch.int64), persistent=False)
        self.register_buffer("bag_mask", bag_mask, persistent=False)
        self.bag_slices = [(start, stop) for _, start, stop in layout.bags]
        slot_starts = list(range(n_cat)) + [start for start, _ in self.bag_slices]
        self.register_buffer("slot_starts", torch.tensor(slot_starts, dtype=torch.int64), persistent=False)
        self.width = layout.ids_width
        #: a row-sparse table gradient, for ``training.lazy_adam.LazyAdam`` (``optim.embedding_updates``)
        self.sparse_grad = False
        self.attention = attention
        #: per-group decay and feature dropout, in training only (``models.regularisers``); none by default
        self.regulariser = regulariser if regulariser is not None else EmbeddingRegulariser(layout, {}, {})
        self.output_dim = (n_cat + len(layout.bags)) * dim + layout.dense_dim
        if attention is not None:
            self.output_dim += attention.output_dim

    def token_weights(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, C): 1 for categorical columns, 1/len(bag) for bag tokens, 0 for padding."""
        weights = (ids != PADDING_ROW).float()
        for start, stop in self.bag_slices:
            count = weights[:, start:stop].sum(1, keepdim=True).clamp_(min=1)
            weights[:, start:stop] /= count
        weights[:, ~self.bag_mask] = 1.0  # an unknown categorical id still reads its OOV row
        return weights

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(ids (B, C), dense (B, D)) -> (B, slots·dim [+ attention] + D): each slot's pooled embedding, the target
        attention's output if any, then the dense inputs. When autograd is on the slots come from the fused lookup
        (one-scatter backward); under no_grad from one ``embedding_bag`` call. In training mode the regulariser may drop
        features first, and adds its decay to the lookup's backward."""
        ids = self.regulariser.drop(ids)
        if not torch.is_grad_enabled():
            return torch.cat([self._pooled_for_inference(ids), *self.attended(ids), dense], dim=1)
        pooled = pooled_lookup(self.table.weight, ids, self.token_weights(ids), self.slot, self.n_categorical,
                               self.bag_slices, self.sparse_grad, self.regulariser.training_decay())
        return torch.cat([pooled.flatten(1), *self.attended(ids), dense], dim=1)

    def attended(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """[] without target attention, else [(B, attention.output_dim)]: the part of the output both paths and the
        ONNX export compute with the same ops, so it is written once."""
        if self.attention is None:
            return []
        return [self.attention(self.table.weight, ids, self.sparse_grad)]

    def _pooled_for_inference(self, ids: torch.Tensor) -> torch.Tensor:
        """The forward of ``_PooledLookup`` without what its backward needs."""
        return slot_sums(self.table.weight, ids, self.token_weights(ids), self.slot_starts).view(ids.shape[0], -1)
