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
from unitarget.data.features import FeatureLayout
from unitarget.models import MultiTaskModel, build_model
from unitarget.training.balancing import LossBalancer, make_balancer
from unitarget.training.loop import Sampler
from unitarget.training.sampling import NaturalSampler, SourceBalancedSampler
from unitarget.training.tasks import TaskSet


@dataclass
class TrainingSetup:
    """What ``training.loop.fit`` trains: the model, its tasks, the batch sampler and the balancer."""

    model: MultiTaskModel
    tasks: TaskSet
    sampler: Sampler
    balancer: LossBalancer


def make_sampler(config: Config, train: Batch) -> NaturalSampler | SourceBalancedSampler:
    """Source-balanced batches (``sampling.ratios``) when ``sampling.balanced`` and the rows hold
    at least two sources; the natural mix otherwise (one source has nothing to balance)."""
    size, seed = config.train.batch_size, config.train.seed
    present = set(torch.unique(train.targets.source).tolist())
    if not config.sampling.balanced or len(present) < 2:
        return NaturalSampler(len(train), size, seed)
    shares = {config.sources.index(s): w for s, w in config.sampling.ratios.items()}
    return SourceBalancedSampler(train.targets.source, size, shares, seed)


def build_setup(
    config: Config,
    layout: FeatureLayout,
    train: Batch,
    *,
    prepare: Callable[[MultiTaskModel], None] | None = None,
    fresh_towers: Sequence[str] | None = None,
) -> TrainingSetup:
    """Build the model ``config`` describes on ``layout`` (seeded with ``train.seed``), then
    ``prepare`` it (fine-tuning loads the base weights and freezes layers there), then start each
    tower of ``fresh_towers`` (default: all) at its task's base rate on ``train``: a fresh head
    that starts at the base rate does not spend its first steps learning the bias."""
    tasks = TaskSet(config.tasks, config.sources)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, layout, tasks.names, config.task_groups())
    if prepare is not None:
        prepare(model)
    fresh = set(tasks.names if fresh_towers is None else fresh_towers)
    for name, rate in zip(tasks.names, tasks.base_rates(train.targets)):
        if name in fresh:
            model.towers[name].start_at_rate(rate)
    balancer = make_balancer(config.loss.method, tasks.weights, alpha=config.loss.gradnorm_alpha,
                             seed=config.train.seed)
    # Row-sparse table gradients for the lazy optimizer; the balancers that take per-task
    # gradients of the shared parameters (gradnorm, pcgrad) need dense ones (Config checks it).
    model.embedder.sparse_grad = config.optim.embedding_updates == "lazy"
    return TrainingSetup(model, tasks, make_sampler(config, train), balancer)
