"""``train.refit``: once model selection has said how long to train, a fresh model trained that long on every row.

The validation days are the newest of a log, the ones most like the days a model scores next: on an ads log they
carry the campaigns, creatives and shows the next days show, which a model that never trained on them meets as
unknown ids. So selection decides the number of epochs (a fraction counted) and the published model is a model of
the same configuration trained that many of its own, longer epochs on the fit and validation rows together, with an
encoder fitted on all of them, on the same learning-rate schedule over ``train.max_epochs`` or, with
``train.refit_anneal``, one whose decay ends at the refit's last step: unlike selection, the refit knows its length
before it starts. It has no held-out figure of its own; the caller keeps the selected model's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from unitarget.config import Config
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureEncoder
from unitarget.models import MultiTaskModel
from unitarget.training.batches import TrainingRows
from unitarget.training.distributed import DistributedContext
from unitarget.training.hooks import TrainingHooks
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup


@dataclass(frozen=True)
class RefitRows:
    """What the refit trains on: every row of the training log, encoded by an encoder fitted on them all (so an id
    first seen in the validation days has its own row), in memory or in the on-disk cache."""

    encoder: FeatureEncoder
    rows: Batch | TrainingRows
    count: int


class _WeightsOnly(MemoryStore):
    """The refit's store: the weights handed to it, and no checkpoint (a refit is never resumed, and a copy of the
    optimiser's state each epoch would double the memory of a large id table for nothing)."""

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """Nothing kept."""


def train_again(data: RefitRows, config: Config, epochs: float, hooks: TrainingHooks,
                distributed: DistributedContext) -> tuple[MultiTaskModel, dict[str, Any]]:
    """A fresh model of ``config`` trained ``epochs`` (the selected model's) on ``data``, and what the run's record
    says of it (``epochs``, ``steps``, ``rows``, ``seconds``). Not checkpointed: a resumed run whose selection had
    finished trains this part again from its start."""
    started = time.perf_counter()
    setup = build_setup(config, data.encoder.layout_, data.rows)
    steps = max(1, round(epochs * len(setup.batches)))
    hooks.on_refit(data.count, steps)
    fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer, validate=None,
        train_config=config.train, optim_config=config.optim, store=_WeightsOnly(), hooks=hooks,
        distributed=distributed, steps=steps, schedule_steps=steps if config.train.refit_anneal else None)
    return setup.model, {"epochs": epochs, "steps": steps, "rows": data.count, "seconds": time.perf_counter() - started}
