"""What the training loop tells its caller (progress bars, trackers, tuners, benchmarks): nothing here changes
training. ``TrainingHooks`` is the protocol; ``SilentHooks`` the base that reports nothing, which a hook subclasses to
hear only what it needs; ``ChainedHooks`` several hooks told the same thing in order."""

from __future__ import annotations

from typing import Any, Protocol


class TrainingHooks(Protocol):
    """What the loop tells its caller (progress bars, benchmarks): nothing here changes training."""

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        """After each optimiser step (``step`` counts from 1 within the epoch)."""
        ...

    def on_validation(self, record: dict[str, Any]) -> None:
        """After each validation, inside an epoch or at its end, with its history record: ``epoch``, ``step`` (the
        optimiser steps of the run so far), ``fraction`` (of the epoch done), ``train_loss`` (over the steps since
        the previous validation), ``valid_score``, ``valid_<target>`` (each target's AP) and ``improved`` (the best
        so far). A tuner may prune the run here by raising."""
        ...

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """After each epoch, with the record of its end-of-epoch validation (``on_validation`` had it first)."""
        ...

    def on_refit(self, rows: int, steps: int) -> None:
        """After selection, before a refit (``train.refit``) trains a fresh model ``steps`` optimiser steps on all
        ``rows`` training rows; its ``on_step`` calls follow, and nothing is validated."""
        ...


class SilentHooks:
    """Hooks that report nothing (library calls, tests)."""

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        """Nothing."""

    def on_validation(self, record: dict[str, Any]) -> None:
        """Nothing."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """Nothing."""

    def on_refit(self, rows: int, steps: int) -> None:
        """Nothing."""


class ChainedHooks:
    """Several hooks told the same thing in order (progress on the console and an experiment tracker)."""

    def __init__(self, *hooks: TrainingHooks) -> None:
        self.hooks = hooks

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        """Each hook's ``on_step``."""
        for hook in self.hooks:
            hook.on_step(epoch, step, steps, loss, examples_per_s)

    def on_validation(self, record: dict[str, Any]) -> None:
        """Each hook's ``on_validation``."""
        for hook in self.hooks:
            hook.on_validation(record)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """Each hook's ``on_epoch_end``."""
        for hook in self.hooks:
            hook.on_epoch_end(record)

    def on_refit(self, rows: int, steps: int) -> None:
        """Each hook's ``on_refit``."""
        for hook in self.hooks:
            hook.on_refit(rows, steps)
