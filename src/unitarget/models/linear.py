"""The linear baseline: one logistic regression per task on one-hot ids, bag means and hashed pairwise crosses.

    logit_t(x) = b_t + Σ_f w_t[id_f] + Σ_bags (1/|bag|) Σ_{i ∈ bag} w_t[id_i] + Σ_{(f,g)} w_t[h(id_f, id_g)] + v_t · dense

It answers "does the deep model beat logistic regression on my log?", so it is built to be trained, saved, loaded,
evaluated, predicted and exported exactly like the deep models; the design follows from that:

- **A MultiTaskModel, not a new model class.** ``build_model`` composes it from three small modules in the roles the
  deep models' parts play: ``LinearTerms`` (the embedder's place) returns every task's weighted feature sum (B, T),
  ``TaskColumns`` (the encoder's place) hands task t its column, and ``BiasTower`` adds b_t, started at the base
  rate's log-odds by ``training.setup`` like every tower. The loop, the TaskSet masks, the balancers, early stopping,
  the run directory and the scoring paths therefore need no branch for it.
- **One weight table of width T.** ``Features.ids`` are already rows of the fused vocabulary table
  (``FeatureLayout.offsets``; hashed vocabularies included), so a one-hot weight is a row of an (R, T) table: no
  hashing for single features. The tasks share no parameter (column t is task t's), so the directional mask is exact:
  an ad impression has zero loss weight on ``promo_stream``, hence zero gradient in that column.
- **Crosses hashed into extra rows.** The pair (a, b) of encoded rows of features f and g reads row
  R + (a·P + b·Q) mod K of the same table (K = ``model.linear.cross_buckets``): integer multiply, add and remainder,
  ops ONNX has, so the export path is the deep models'. The crossed pairs are every pair of single-valued categorical
  features in the log, or the pairs ``model.linear.crosses`` lists (pairs naming a feature the log lacks are left out,
  as the encoder leaves the feature out). Bags are not crossed: each bag is one mean-pooled term.
- **Zero start, L2 through the optimiser.** The problem is convex, so weights start at zero (the model starts at the
  base rate); ``optim.weight_decay`` is the L2 penalty (Adam adds it to the gradient), which the ``logreg`` preset
  sets small.
- **No fine-tuning.** A new head would be a new column of the shared table, which the base weights cannot be loaded
  into; ``pipeline.finetune`` says so instead of failing on a shape mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import nn

from unitarget.model_config import LinearConfig
from unitarget.data.encoders import PADDING_ROW
from unitarget.data.features import FeatureLayout
from unitarget.models.embeddings import pooled_lookup

#: Odd multipliers of the cross hash h(a, b) = (a·P + b·Q) mod K; a·P + b·Q stays far below 2^63 for any table.
_P, _Q = 1_000_003, 998_244_353


def cross_pairs(layout: FeatureLayout, crosses: Sequence[tuple[str, str]] | None) -> list[tuple[int, int]]:
    """Column pairs (j, k) of ``Features.ids`` to cross: every pair of categorical features, or those of ``crosses``
    the layout has (a feature the log lacks is not in the layout, so its crosses are left out)."""
    columns = {name: j for j, name in enumerate(layout.categorical)}
    if crosses is None:
        return list(combinations(range(layout.n_categorical), 2))
    return [(columns[f], columns[g]) for f, g in crosses if f in columns and g in columns]


class LinearRows(nn.Module):
    """Which rows of a linear weight table an impression reads, and with what weight: the structure of the linear terms,
    without their weights (``LinearTerms`` holds one (R + K, T) table, ``models.wide.WideTerms`` one column per task).
    No parameters and no persistent buffers: it adds nothing to a state_dict."""

    def __init__(self, layout: FeatureLayout, config: LinearConfig) -> None:
        super().__init__()
        pairs = cross_pairs(layout, config.crosses)
        self.register_buffer("left", torch.tensor([j for j, _ in pairs], dtype=torch.int64), persistent=False)
        self.register_buffer("right", torch.tensor([k for _, k in pairs], dtype=torch.int64), persistent=False)
        self.n_categorical = layout.n_categorical
        self.bag_slices = [(start, stop) for _, start, stop in layout.bags]
        # the fused lookup's view of ``rows``: categorical ids and crosses are single rows, then the bags
        self.n_singles = layout.n_categorical + len(pairs)
        self.row_bags = [(start + len(pairs), stop + len(pairs)) for start, stop in self.bag_slices]
        slot = list(range(self.n_singles))
        for k, (start, stop) in enumerate(self.row_bags):
            slot += [self.n_singles + k] * (stop - start)
        self.register_buffer("slot", torch.tensor(slot, dtype=torch.int64), persistent=False)
        self.cross_offset = layout.table_rows
        self.buckets = config.cross_buckets
        self.table_rows = layout.table_rows + (config.cross_buckets if pairs else 0)  # no crosses: no cross rows

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, C + P) rows of the weight table each impression reads: its categorical ids, one hashed row per cross,
        then its bag tokens (single rows first, as the fused lookup takes them)."""
        ids = ids.long()
        a, b = ids.index_select(1, self.left), ids.index_select(1, self.right)
        crossed = torch.remainder(a * _P + b * _Q, self.buckets) + self.cross_offset  # (B, P)
        return torch.cat([ids[:, : self.n_categorical], crossed, ids[:, self.n_categorical:]], dim=1)

    def row_weights(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, C + P) weight of each row read: 1 for a categorical id (an unknown id reads its OOV row) and a cross,
        1/len(bag) for a bag token, 0 for padding, so a bag adds the mean of its tokens' weights."""
        batch = ids.shape[0]
        parts = [torch.ones(batch, self.n_singles, device=ids.device)]
        for start, stop in self.bag_slices:
            present = (ids[:, start:stop] != PADDING_ROW).float()
            parts.append(present / present.sum(1, keepdim=True).clamp(min=1.0))
        return torch.cat(parts, dim=1)

    def sums(self, table: torch.Tensor, dense_weight: torch.Tensor, ids: torch.Tensor, dense: torch.Tensor,
             sparse_grad: bool = False) -> torch.Tensor:
        """(B, T) weighted sums of ``table`` (R + K, T) rows and of ``dense`` by ``dense_weight`` (D, T).
        Training goes through the embedder's fused lookup (``embeddings.pooled_lookup``: one scatter in the backward,
        row-sparse gradients with ``sparse_grad``); inference and export read the table with a plain gather, the
        same sums."""
        rows, weights = self.rows(ids), self.row_weights(ids)
        if torch.is_grad_enabled():
            summed = pooled_lookup(table, rows, weights, self.slot, self.n_singles, self.row_bags, sparse_grad).sum(1)
        else:
            summed = (nn.functional.embedding(rows, table) * weights.unsqueeze(-1)).sum(1)  # (B, T)
        return summed + dense.float() @ dense_weight


class LinearTerms(nn.Module):
    """(ids (B, C), dense (B, D)) -> (B, T): each task's Σ of weights over its one-hot ids, bag means, crosses and dense
    inputs, all but the bias. One gather of the (R + K, T) table per batch, written in ops ONNX exports."""

    def __init__(self, layout: FeatureLayout, n_tasks: int, config: LinearConfig) -> None:
        super().__init__()
        self.structure = LinearRows(layout, config)
        self.table = nn.Embedding(self.structure.table_rows, n_tasks)
        nn.init.zeros_(self.table.weight)
        self.dense = nn.Parameter(torch.zeros(layout.dense_dim, n_tasks))  # v_t, one column per task
        self.sparse_grad = False  # set by training.setup, as the embedder's
        self.output_dim = n_tasks

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(ids (B, C), dense (B, D)) -> (B, T) weighted sums per task (the bias is each task's ``BiasTower``)."""
        return self.structure.sums(self.table.weight, self.dense, ids, dense, self.sparse_grad)


class TaskColumns(nn.Module):
    """The linear model's encoder: (B, T) per-task sums -> one (B, 1) column per wanted task, so ``MultiTaskModel``
    hands each task's ``BiasTower`` its own sum (``forward_tasks`` computes the same sums and keeps the wanted ones)."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.output_dim = 1

    def forward(self, x: torch.Tensor, tasks: Sequence[int] | None = None) -> list[torch.Tensor]:
        """x (B, T) -> [(B, 1)] for each task index of ``tasks`` (all by default)."""
        wanted = range(self.n_tasks) if tasks is None else tasks
        return [x[:, i:i + 1] for i in wanted]

    def last_shared_weight(self) -> None:
        """None: no layer is read by every task (task t's weights are column t of the table), so GradNorm has no W."""
        return None
