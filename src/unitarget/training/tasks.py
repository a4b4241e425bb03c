"""Tasks own their label, the sources they learn from, and their masked loss.

This is the one place masking happens. For task t and impression x from source s(x):

    L_t = (1/B) Σ_x  r(x) · m[s(x), t] · f[φ(x), t] · o_t(x) · BCE(y_t(x), σ(logit_t(x)))

where m is the source mask (the paper's directional mask: an ad impression never updates a
promotions task), f is the format mask (CAMoE's adaptive loss masking: with ``TaskSpec.formats``
set, an impression of ad format φ(x) updates only the tasks of its own format; f = 1 everywhere
when no task sets formats) and o_t(x) is 1 when label y_t was observed (null labels incur no loss,
they are never read as 0). Dividing by the batch size B, not by the number of unmasked rows, is the paper's
E_{x∼D}[m·ℓ]: a task that only half the batch may update gets half the gradient scale. r(x) is the row's
loss weight (``Targets.weight``; 1 unless ``sampling.mode = "reweight"``): weights of mean 1 over the
training rows keep B as the normaliser, so a reweighted natural batch estimates the balanced batch's
loss without bias, and a rank's share of a batch under DDP still divides by its own rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from unitarget.config import TaskSpec
from unitarget.contract import AD_FORMATS
from unitarget.data.batch import Targets


def labels_of(tasks: Sequence[TaskSpec]) -> tuple[str, ...]:
    """Distinct label columns the tasks need, in first-use order: the columns of ``Targets.labels``."""
    return tuple(dict.fromkeys(t.label for t in tasks))


class TaskSet:
    """The tasks of one model as tensors: label columns, source mask m (S, T), format mask f (F + 1, T) and weights λ_t,
    and the masked losses built from them."""

    def __init__(self, tasks: Sequence[TaskSpec], sources: Sequence[str]) -> None:
        self.specs = tuple(tasks)
        self.sources = tuple(sources)
        self.labels = labels_of(tasks)
        self.names = tuple(t.name for t in tasks)
        self.label_index = torch.tensor([self.labels.index(t.label) for t in tasks])  # (T,)
        #: (S, T): 1 where an impression of source s may update task t
        self.source_mask = torch.tensor(
            [[float(s in t.sources) for t in tasks] for s in self.sources]
        )
        self.weights = torch.tensor([t.weight for t in tasks])  # λ_t
        #: (F + 1, T): 1 where an impression of format f may update task t; the last row is a null
        #: or unknown format, which only tasks without a format filter learn from
        self.format_mask = torch.tensor(
            [[float(t.formats is None or f in t.formats) for t in tasks] for f in (*AD_FORMATS, None)]
        )
        self.masks_formats = any(t.formats is not None for t in tasks)

    def __len__(self) -> int:
        return len(self.specs)

    def loss_weights(self, targets: Targets) -> torch.Tensor:
        """(B, T) m[s(x), t] · f[φ(x), t] · o_t(x): which rows may update which task."""
        observed = targets.label_mask.index_select(1, self.label_index).float()
        weights = self.source_mask.index_select(0, targets.source) * observed
        if self.masks_formats:
            if targets.format is None:
                raise ValueError("tasks with a format filter need Targets.format (FeatureEncoder sets it)")
            weights = weights * self.format_mask.index_select(0, targets.format)
        return weights

    def targets(self, targets: Targets) -> torch.Tensor:
        """(B, T) each task's label column."""
        return targets.labels.index_select(1, self.label_index)

    def losses(self, logits: torch.Tensor, targets: Targets) -> torch.Tensor:
        """(T,) masked binary cross-entropy per task, each row weighted by ``targets.weight`` (if set), averaged over
        the whole batch."""
        per_row = F.binary_cross_entropy_with_logits(logits.float(), self.targets(targets), reduction="none")
        weights = self.loss_weights(targets)
        if targets.weight is not None:
            weights = weights * targets.weight.unsqueeze(1)
        return (per_row * weights).sum(0) / logits.shape[0]

    def rate_sums(self, data: Targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) positives and (T,) rows allowed to update each task: summed chunk by chunk, their ratio is each
        task's base rate (``training.batches.base_rates``)."""
        weights = self.loss_weights(data)
        return (self.targets(data) * weights).sum(0), weights.sum(0)

    def task_sources(self, name: str) -> tuple[str, ...]:
        """The sources task ``name`` learns from (its row of the directional mask)."""
        return self.specs[self.names.index(name)].sources
