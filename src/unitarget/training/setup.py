"""One training setup: from a configuration, a fitted encoder and the training rows, everything the
loop needs (model, tasks, sampler, loss balancer), built the same way for every caller.

``pipeline.train``, ``pipeline.finetune``, the CAMoE study and the cost benchmark all build their
runs here, so a switch a user sets (``sampling``, ``loss``, ``model``, ``train.seed``) means the
same thing everywhere and cannot be silently ignored by one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from unitarget.config import Config
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureEncoder, FeatureLayout
from unitarget.models import MultiTaskModel, build_model
from unitarget.training.balancing import LossBalancer, make_balancer
from unitarget.training.batches import BatchStream, InMemoryRows, TrainingRows, base_rates
from unitarget.training.tasks import TaskSet, labels_of


def encoder_for(config: Config) -> FeatureEncoder:
    """An unfitted encoder of ``config``'s features, sources, task labels and shared vocabularies: what every
    training fits (on a table, or chunk by chunk from a log on disk)."""
    return FeatureEncoder(config.features, config.sources, labels_of(config.tasks), config.shared_vocabularies())


@dataclass
class TrainingSetup:
    """What ``training.loop.fit`` trains: the model, its tasks, the stream of batches and the balancer."""

    model: MultiTaskModel
    tasks: TaskSet
    batches: BatchStream
    balancer: LossBalancer


def build_setup(
    config: Config,
    layout: FeatureLayout,
    train: Batch | TrainingRows,
    *,
    prepare: Callable[[MultiTaskModel], None] | None = None,
    fresh_towers: Sequence[str] | None = None,
) -> TrainingSetup:
    """Build the model ``config`` describes on ``layout`` (seeded with ``train.seed``), then
    ``prepare`` it (fine-tuning loads the base weights and freezes layers there), then start each
    tower of ``fresh_towers`` (default: all) at its task's base rate on ``train``: a fresh head
    that starts at the base rate does not spend its first steps learning the bias. ``train`` is an
    encoded ``Batch`` in memory or any ``TrainingRows`` (``training.windows``: the on-disk cache)."""
    rows = InMemoryRows(train) if isinstance(train, Batch) else train
    tasks = TaskSet(config.tasks, config.sources)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, layout, tasks.names, config.task_groups())
    if prepare is not None:
        prepare(model)
    fresh = set(tasks.names if fresh_towers is None else fresh_towers)
    for name, rate in zip(tasks.names, base_rates(rows, tasks)):
        if name in fresh:
            model.towers[name].start_at_rate(rate)
    balancer = make_balancer(config.loss.method, tasks.weights, alpha=config.loss.gradnorm_alpha,
                             seed=config.train.seed)
    # Row-sparse table gradients for the lazy optimizer; the balancers that take per-task
    # gradients of the shared parameters (gradnorm, pcgrad) need dense ones (Config checks it).
    for table in (model.embedder, model.wide):
        if table is not None:
            table.sparse_grad = config.optim.embedding_updates == "lazy"
    return TrainingSetup(model, tasks, rows.batches(config), balancer)
