"""The training loop: one function, visible phases, two hooks.

Phases per step: sample rows -> forward -> masked per-task losses -> balance -> backward -> step.
Per epoch: validate on the validation split only (never the test split), keep the best weights,
write a resumable checkpoint atomically, stop early when validation stops improving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from unitarget.config import OptimConfig, TrainConfig
from unitarget.data.batch import Batch
from unitarget.errors import UnitargetError
from unitarget.models import MultiTaskModel
from unitarget.training import checkpoint
from unitarget.training.balancing import LossBalancer
from unitarget.training.schedule import make_optimizer, make_scheduler
from unitarget.training.tasks import TaskSet

CHECKPOINT_FILE = "checkpoint.pt"
BEST_WEIGHTS_FILE = "model.pt"


class Sampler(Protocol):
    def __len__(self) -> int: ...
    def epoch(self, epoch: int): ...


class TrainingHooks(Protocol):
    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None: ...
    def on_epoch_end(self, record: dict[str, Any]) -> None: ...


class SilentHooks:
    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        pass

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        pass


class TrainingDivergedError(UnitargetError):
    """The loss became NaN or infinite."""


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_score: float = float("-inf")
    best_epoch: int = -1
    stale_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(
    model: MultiTaskModel,
    tasks: TaskSet,
    train: Batch,
    *,
    sampler: Sampler,
    balancer: LossBalancer,
    validate: Callable[[MultiTaskModel], tuple[float, dict[str, float]]],
    train_config: TrainConfig,
    optim_config: OptimConfig,
    run_dir: Path,
    resume: bool = False,
    hooks: TrainingHooks = SilentHooks(),
) -> TrainState:
    """Train ``model`` in place; on return it holds the best validation weights."""
    optimizer = make_optimizer([*model.parameters(), *balancer.parameters()], optim_config)
    shared = model.shared_parameters()
    steps_per_epoch = len(sampler)
    scheduler = make_scheduler(optimizer, optim_config, steps_per_epoch * train_config.max_epochs)
    state = TrainState()
    if resume:
        state = _restore(run_dir, model, optimizer, scheduler, balancer)

    while state.epoch < train_config.max_epochs and state.stale_epochs < train_config.patience:
        epoch = state.epoch
        # ---- train one epoch
        model.train()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, index in enumerate(sampler.epoch(epoch)):
            batch = train.take(index)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=train_config.bf16):
                logits = model(batch.features)
            task_losses = tasks.losses(logits, batch.targets)
            if not bool(torch.isfinite(task_losses).all()):
                raise _diverged(epoch, step, task_losses, tasks, scheduler.get_last_lr()[0])
            optimizer.zero_grad(set_to_none=True)
            loss = balancer.backward(task_losses, shared)
            optimizer.step()
            balancer.after_step()
            scheduler.step()
            seen += len(index)
            loss_value = loss.item()
            loss_sum += loss_value
            hooks.on_step(epoch, step + 1, steps_per_epoch, loss_value, seen / (time.perf_counter() - started))
        train_seconds = time.perf_counter() - started
        # ---- validate, keep the best weights, checkpoint
        score, details = validate(model)
        improved = score > state.best_score or state.best_epoch < 0  # the first epoch is always kept
        if improved:
            state.best_score, state.best_epoch, state.stale_epochs = score, epoch, 0
            checkpoint.save({"model": model.state_dict()}, run_dir / BEST_WEIGHTS_FILE)
        else:
            state.stale_epochs += 1
        state.epoch = epoch + 1
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, steps_per_epoch),
            "examples_per_s": seen / train_seconds,
            "seconds": train_seconds,
            "valid_score": score,
            "improved": improved,
            **{f"valid_{k}": v for k, v in details.items()},
        }
        state.history.append(record)
        _save_checkpoint(run_dir, model, optimizer, scheduler, balancer, state)
        hooks.on_epoch_end(record)

    model.load_state_dict(checkpoint.load(run_dir / BEST_WEIGHTS_FILE)["model"])
    return state


def _diverged(epoch: int, step: int, task_losses: torch.Tensor, tasks: TaskSet, lr: float) -> TrainingDivergedError:
    per_task = ", ".join(f"{n}={v:.4g}" for n, v in zip(tasks.names, task_losses.detach().tolist()))
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, step {step}: the loss is not finite ({per_task}; "
        f"learning rate {lr:.3g}). Lower optim.lr, or check the numeric features for extreme values."
    )


def _save_checkpoint(run_dir: Path, model, optimizer, scheduler, balancer, state: TrainState) -> None:
    checkpoint.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "balancer": balancer.state_dict(),
            "rng": torch.get_rng_state(),
            "state": {
                "epoch": state.epoch,
                "best_score": state.best_score,
                "best_epoch": state.best_epoch,
                "stale_epochs": state.stale_epochs,
                "history": state.history,
            },
        },
        run_dir / CHECKPOINT_FILE,
    )


def _restore(run_dir: Path, model, optimizer, scheduler, balancer) -> TrainState:
    payload = checkpoint.load(run_dir / CHECKPOINT_FILE)
    model.load_state_dict(payload["model"])
    balancer.load_state_dict(payload["balancer"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"])
    return TrainState(**payload["state"])
