"""The training loop: one function, visible phases, three hooks and a store.

Phases per step: sample rows -> forward -> masked per-task losses -> balance -> backward -> step
(-> move the average of the weights, with ``train.ema_decay``).
Per epoch, at its end and (``train.validate_every``) at fixed steps inside it: validate on the
validation split only (never the test split), hand the weights (the average's, with ``ema_decay``)
to the store when they improve, stop early after ``patience`` validations without improvement; at
the epoch's end, write a resumable checkpoint. The loop names no file: a ``TrainingStore`` keeps the
best weights and the checkpoint (``runs.Staging`` on disk, ``MemoryStore`` for studies that keep nothing).

With ``train.checkpoint_every_steps`` / ``_minutes`` a checkpoint is also written between two
steps inside an epoch (``training.trigger``). It holds the epoch's position (steps done, their loss
sum and examples) besides the weights, optimiser, schedule, balancer and the torch RNG state: a
resumed run redraws the epoch's batches from (seed, epoch), skips the ones done, restores the RNG
(dropout) as it was after the last of them, and so reaches the weights an uninterrupted run would.
The validations done so far, the best score and the average of the weights are in it too.

Under torchrun (``training.distributed``) the same loop runs on every rank: each trains its share of
every global batch through the model in DDP, rank 0 validates (at the same steps as the others wait)
and writes the store, and every rank receives what rank 0 decided and loaded. The average of the
weights lives on rank 0 alone, which scores and publishes it. For a single process none of this happens.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch

from unitarget.config import OptimConfig, TrainConfig
from unitarget.errors import UnitargetError
from unitarget.models import MultiTaskModel
from unitarget.training.balancing import LossBalancer, SharedParameters
from unitarget.training.batches import BatchStream
from unitarget.training.distributed import DistributedContext, Replica
from unitarget.training.ema import WeightAverage
from unitarget.training.hooks import SilentHooks, TrainingHooks
from unitarget.training.schedule import make_optimizer, make_scheduler
from unitarget.training.tasks import TaskSet
from unitarget.training.trigger import CheckpointTrigger, validation_steps

Validate = Callable[[MultiTaskModel], tuple[float, dict[str, float]]]


class TrainingStore(Protocol):
    """Where what outlives an epoch is kept: the best weights so far and the resumable checkpoint."""

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        """Keep ``weights`` as the best so far (the caller may change the tensors afterwards)."""
        ...

    def load_best(self) -> dict[str, torch.Tensor]:
        """The weights last kept by ``save_best``."""
        ...

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """Keep the state ``fit(resume=True)`` continues from."""
        ...

    def load_checkpoint(self) -> dict[str, Any]:
        """The state last kept by ``save_checkpoint``."""
        ...


class MemoryStore:
    """A ``TrainingStore`` in memory: for studies and benchmarks, whose runs are not resumed."""

    def __init__(self) -> None:
        self.best: dict[str, torch.Tensor] | None = None
        self.checkpoint: dict[str, Any] | None = None

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        """A deep copy: the model's tensors keep training after this call."""
        self.best = copy.deepcopy(weights)

    def load_best(self) -> dict[str, torch.Tensor]:
        """The kept copy."""
        if self.best is None:
            raise UnitargetError("no best weights were kept")
        return self.best

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """A deep copy: ``state_dict`` tensors share storage with the live model and optimiser."""
        self.checkpoint = copy.deepcopy(payload)

    def load_checkpoint(self) -> dict[str, Any]:
        """The kept payload."""
        if self.checkpoint is None:
            raise UnitargetError("nothing to resume: no checkpoint was kept")
        return self.checkpoint


class TrainingDivergedError(UnitargetError):
    """The loss became NaN or infinite."""


@dataclass
class TrainState:
    """The loop's counters, checkpointed with the weights: enough to resume, mid-epoch too, and to stop early."""

    epoch: int = 0  # epochs completed, i.e. the epoch in progress
    best_score: float = float("-inf")
    best_epoch: int = -1
    best_step: int = -1  # the run's optimiser steps at the best validation
    stale: int = 0  # validations since the best one (patience counts them)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per validation
    # The epoch in progress so far (all zero at its start):
    step: int = 0  # optimiser steps done: a resumed run continues with the next one
    seen: int = 0  # examples they saw
    seconds: float = 0.0  # time they took, across interruptions
    validated_at: int = 0  # the step of its last validation (0: none yet)
    loss_sum: float = 0.0  # the sum of the losses since then (the next validation's train_loss is their mean)

    def next_epoch(self) -> None:
        """Count the epoch in progress as done and zero its position, before the epoch-end checkpoint."""
        self.epoch += 1
        self.step, self.loss_sum, self.seen, self.seconds, self.validated_at = 0, 0.0, 0, 0.0, 0


def fit(
    model: MultiTaskModel,
    tasks: TaskSet,
    batches: BatchStream,
    *,
    balancer: LossBalancer,
    validate: Validate | None,
    train_config: TrainConfig,
    optim_config: OptimConfig,
    store: TrainingStore,
    resume: bool = False,
    hooks: TrainingHooks = SilentHooks(),
    distributed: DistributedContext = DistributedContext(),
    steps: int | None = None,
    schedule_steps: int | None = None,
) -> TrainState:
    """Train ``model`` in place; on return it holds the best validation weights (of the average, with
    ``train.ema_decay``), or with ``steps`` (a refit: ``validate`` is never called) the weights after that many
    optimiser steps, on the same learning-rate schedule (over ``train.max_epochs``), or with ``schedule_steps`` one
    whose decay ends there.

    ``resume`` continues from the store's last checkpoint, an epoch-end one or (with
    ``train.checkpoint_every_steps`` / ``_minutes``) one between two steps, and reaches the weights
    and history (timings aside) the uninterrupted run would have. Under ``distributed`` (torchrun,
    ``training.distributed``) ``batches`` are the global batches, of which this rank trains its share;
    rank 0 validates and writes the store, and every rank gets its decisions.
    """
    if (validate is None) == (steps is None):
        raise ValueError("fit selects on validate, or (a refit) trains a given number of steps: one of the two")
    store, batches = distributed.store(store), distributed.batches(batches)
    # The average copies the model's modules, so before DDP wraps them; rank 0 alone scores and publishes it.
    average = WeightAverage(model, train_config.ema_decay) if train_config.ema_decay and distributed.is_main else None
    replica = distributed.replica(model, balancer, train_config.seed)
    optimizer = make_optimizer([model, balancer], optim_config)
    scheduler = make_scheduler(optimizer, optim_config, schedule_steps or len(batches) * train_config.max_epochs)
    parts = _Parts(model, optimizer, scheduler, balancer, average)
    state = parts.restore(store.load_checkpoint()) if resume else TrainState()
    checkpoints = _Checkpoints(store, parts, CheckpointTrigger(train_config.checkpoint_every_steps,
                                                               train_config.checkpoint_every_minutes))
    scored = model if average is None else average.model
    selection: _Selection | _FixedSteps = (
        _Selection(validate, scored, store, distributed, hooks, train_config.patience, len(batches),
                   validation_steps(train_config.validate_every, len(batches)))
        if validate is not None else _FixedSteps(scored, store, len(batches), steps))
    while state.epoch < train_config.max_epochs and not selection.stopped(state):
        _train_epoch(parts, replica, tasks, batches, state, train_config.use_bf16, hooks, checkpoints, selection)
        if selection.stopped(state):  # by a validation inside the epoch: checkpointed, so a resume trains no more
            checkpoints.write(state)
            break
        record = selection.validate(state)  # the epoch's end
        state.next_epoch()
        checkpoints.write(state)
        hooks.on_epoch_end(record)
    model.load_state_dict(store.load_best())
    return state


@dataclass
class _Selection:
    """Model selection: validation at the epoch's end and after the steps ``inside`` it, the best weights so far
    handed to the store, and the validations since, against ``patience``."""

    score: Validate
    scored: MultiTaskModel  # the model, or the average of its weights
    store: TrainingStore
    distributed: DistributedContext
    hooks: TrainingHooks
    patience: int
    steps: int  # per epoch
    inside: frozenset[int]

    def due(self, state: TrainState) -> bool:
        """Whether a validation follows the step just done, inside the epoch (its end is ``fit``'s)."""
        return state.step in self.inside

    def stopped(self, state: TrainState) -> bool:
        """Whether ``patience`` validations in a row have not improved on the best."""
        return state.stale >= self.patience

    def validate(self, state: TrainState) -> dict[str, Any]:
        """Score (rank 0 under DDP, its score broadcast), keep the weights when they are the best so far (the first
        validation's always), add the history record and report it."""
        score, details = self.distributed.from_main(lambda: self.score(self.scored))
        improved = score > state.best_score or not state.history
        step = state.epoch * self.steps + state.step
        if improved:
            state.best_score, state.best_epoch, state.best_step, state.stale = score, state.epoch, step, 0
            self.store.save_best(self.scored.state_dict())
        else:
            state.stale += 1
        record = {
            "epoch": state.epoch,
            "step": step,
            "fraction": state.step / max(1, self.steps),
            "train_loss": state.loss_sum / max(1, state.step - state.validated_at),
            "examples_per_s": state.seen / state.seconds,
            "seconds": state.seconds,
            "valid_score": score,
            "improved": improved,
            **{f"valid_{k}": v for k, v in details.items()},
        }
        state.history.append(record)
        state.validated_at, state.loss_sum = state.step, 0.0
        self.hooks.on_validation(record)
        return record


@dataclass
class _FixedSteps:
    """A refit's stand-in for ``_Selection``: nothing is validated; the weights after ``target`` optimiser steps of the
    run (the average's, with ``train.ema_decay``) are handed to the store there, where training stops (inside the
    epoch, its last step included: an epoch's end before the target keeps nothing)."""

    scored: MultiTaskModel
    store: TrainingStore
    steps: int  # per epoch
    target: int

    def due(self, state: TrainState) -> bool:
        return state.epoch * self.steps + state.step == self.target

    def stopped(self, state: TrainState) -> bool:
        return state.epoch * self.steps + state.step >= self.target

    def validate(self, state: TrainState) -> dict[str, Any]:
        if self.due(state):
            self.store.save_best(self.scored.state_dict())
        return {"epoch": state.epoch, "step": state.epoch * self.steps + state.step,
                "fraction": state.step / max(1, self.steps)}


@dataclass
class _Parts:
    """What a checkpoint holds besides the loop's counters."""

    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    balancer: LossBalancer
    average: WeightAverage | None  # with train.ema_decay, on rank 0

    def checkpoint(self, state: TrainState) -> dict[str, Any]:
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "balancer": self.balancer.state_dict(),
            "rng": torch.get_rng_state(),
            "state": asdict(state),
        }
        return payload if self.average is None else payload | {"average": self.average.state_dict()}

    def restore(self, payload: dict[str, Any]) -> TrainState:
        self.model.load_state_dict(payload["model"])
        self.balancer.load_state_dict(payload["balancer"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(payload["average"])
        torch.set_rng_state(payload["rng"])
        return TrainState(**payload["state"])


@dataclass
class _Checkpoints:
    """Writes the resumable checkpoint: at each epoch's end, and between two steps when the trigger says so."""

    store: TrainingStore
    parts: _Parts
    trigger: CheckpointTrigger

    def write(self, state: TrainState) -> None:
        self.store.save_checkpoint(self.parts.checkpoint(state))
        self.trigger.restart()

    def after_step(self, state: TrainState, steps: int) -> None:
        # Not after an epoch's last step: the epoch-end checkpoint follows its validation at once.
        if self.trigger.due() and state.step < steps:
            self.write(state)


def _train_epoch(parts: _Parts, replica: Replica, tasks: TaskSet, batches: BatchStream, state: TrainState,
                 bf16: bool, hooks: TrainingHooks, checkpoints: _Checkpoints,
                 selection: _Selection | _FixedSteps) -> None:
    """Epoch ``state.epoch`` from step ``state.step`` on (0, or where a mid-epoch checkpoint stopped), adding its
    steps, losses, examples and time to ``state``, validating and checkpointing between steps when due, and
    returning early when a validation stops training. The forward goes through ``replica.net`` (the model, or
    the model in DDP)."""
    model, optimizer, scheduler, balancer = parts.model, parts.optimizer, parts.scheduler, parts.balancer
    shared = SharedParameters(model.shared_parameters(), model.last_shared_weight())
    model.train()
    started, before, steps = time.perf_counter(), state.seconds, len(batches)
    # The epoch's batches as the uninterrupted run draws them (from (seed, epoch)), less those already done.
    for batch in batches.epoch(state.epoch, state.step):
        replica.before_step(state.epoch, state.step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = replica.net(batch.features)
        task_losses = tasks.losses(logits, batch.targets)
        if not bool(torch.isfinite(task_losses).all()):
            raise _diverged(state.epoch, state.step, task_losses, tasks, scheduler.get_last_lr()[0])
        optimizer.zero_grad(set_to_none=True)
        loss = balancer.backward(task_losses, shared)
        replica.after_backward()
        optimizer.step()
        balancer.after_step()
        scheduler.step()
        if parts.average is not None:
            parts.average.update(model)
        loss_value = replica.loss(loss)
        state.step, state.seen = state.step + 1, state.seen + replica.examples(len(batch))
        state.loss_sum += loss_value
        state.seconds = before + (time.perf_counter() - started)
        if selection.due(state):  # before the checkpoint, which then holds this validation
            paused = time.perf_counter()
            selection.validate(state)
            model.train()
            started += time.perf_counter() - paused  # the epoch's time is the training's
        checkpoints.after_step(state, steps)
        hooks.on_step(state.epoch, state.step, steps, loss_value, state.seen / state.seconds)
        if selection.stopped(state):
            return


def _diverged(epoch: int, step: int, task_losses: torch.Tensor, tasks: TaskSet, lr: float) -> TrainingDivergedError:
    per_task = ", ".join(f"{n}={v:.4g}" for n, v in zip(tasks.names, task_losses.detach().tolist()))
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, step {step}: the loss is not finite ({per_task}; "
        f"learning rate {lr:.3g}). Lower optim.lr, or check the numeric features for extreme values."
    )
