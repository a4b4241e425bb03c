"""Wide & Deep's wide part (Cheng et al. 2016): each task's own linear term, added to its deep logit (``model.wide``).

    logit_t(x) = tower_t(encoder(x)) + Σ_f w_t[id_f] + Σ_bags mean w_t[tokens] (+ Σ_(f,g) w_t[h(id_f, id_g)]) + v_t · dense

The deep part must push a per-id effect (a show's or a creative's own quality) through an embedding and the MLP, and
on a short log it starts memorising before it has; a one-hot weight learns the same effect in one step of its
gradient. So the deep model keeps, at the least, what a first-order linear model can reach.

The terms are the linear baseline's (``models.linear.LinearTerms``: one (R + K, T) table, column t task t's), over the
one-hot ids and bag means; the hashed pairwise crosses of ``model.linear`` only with ``model.wide_crosses`` (the deep
part learns interactions itself, and every cross is one more random read per row: with all 105 pairs of the contract's
categoricals, ONNX Runtime scores 200 candidates in about 2.7x the deep model's time, against 1.4x without them).
Fine-tuning adds a head's column at zero (``load_base``); a frozen fine-tuning keeps the old columns by zeroing their
gradient (``freeze_columns``).
Under ``optim.embedding_updates = "lazy"`` the table's gradient is row-sparse, as the embedder's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unitarget.data.features import FeatureLayout
from unitarget.model_config import LinearConfig
from unitarget.models.linear import LinearTerms


class WideTerms(LinearTerms):
    """(ids (B, C), dense (B, D)) -> (B, T) linear terms, one column per task of ``tasks``."""

    def __init__(self, layout: FeatureLayout, tasks: Sequence[str], config: LinearConfig) -> None:
        super().__init__(layout, len(tasks), config)
        self.tasks = list(tasks)

    def columns(self, ids: torch.Tensor, dense: torch.Tensor, wanted: Sequence[int]) -> torch.Tensor:
        """(B, len(wanted)) terms of the tasks at indices ``wanted``."""
        terms = self(ids, dense)
        return terms if list(wanted) == list(range(len(self.tasks))) else terms[:, list(wanted)]

    def load_base(self, table: torch.Tensor, dense: torch.Tensor, base_tasks: Sequence[str]) -> None:
        """Take a base model's columns (``finetune``): each of ``base_tasks`` from the base's (R + K, T₀) ``table`` and
        (D, T₀) ``dense``; a task the base lacks keeps its zero column."""
        with torch.no_grad():
            for j, name in enumerate(base_tasks):
                k = self.tasks.index(name)
                self.table.weight[:, k] = table[:, j]
                self.dense[:, k] = dense[:, j]

    def copy_task(self, source: str, target: str) -> None:
        """Start task ``target``'s column as a copy of ``source``'s (``finetune --init-from``)."""
        with torch.no_grad():
            s, t = self.tasks.index(source), self.tasks.index(target)
            self.table.weight[:, t] = self.table.weight[:, s]
            self.dense[:, t] = self.dense[:, s]

    def freeze_columns(self, learning: Sequence[str]) -> None:
        """Let only the columns of ``learning`` learn: the others' gradients are zeroed as they are computed, so Adam
        leaves them as they are (``pipeline.finetune`` refuses weight decay with it, which would still move them)."""
        keep = torch.tensor([name in learning for name in self.tasks], dtype=torch.float32)

        def only_learning(grad: torch.Tensor) -> torch.Tensor:
            if grad.is_sparse:  # optim.embedding_updates = "lazy": the rows read, each with T columns
                grad = grad.coalesce()
                return torch.sparse_coo_tensor(grad.indices(), grad.values() * keep, grad.shape)
            return grad * keep.to(grad.dtype)

        for parameter in (self.table.weight, self.dense):
            parameter.register_hook(only_learning)
