"""When ``fit`` acts inside an epoch: it writes a checkpoint every N optimiser steps or M minutes since the
last checkpoint, whichever comes first (``train.checkpoint_every_steps`` / ``_minutes``), and validates
at the steps ``train.validate_every`` names (``validation_steps``).

The count restarts at every checkpoint, the epoch-end ones included, and at the start of a run,
resumed or not. Where checkpoints fall never changes the weights: they only decide how much work a
kill can cost. The clock is ``time.monotonic`` (wall-clock changes do not fire it), imported by
name so a test can replace it in this module alone.

Validations inside an epoch fall at fixed steps of it, a function of ``validate_every`` and the epoch's
length only: the same on every data-parallel rank and in a resumed run, wherever it was checkpointed.
"""

from __future__ import annotations

from itertools import count, takewhile
from time import monotonic


class CheckpointTrigger:
    """Optimiser steps and seconds since the last checkpoint, against the two limits; with neither set it is never
    due, and checkpoints are written at epoch ends only (the default, as before these options existed)."""

    def __init__(self, every_steps: int | None, every_minutes: float | None) -> None:
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else every_minutes * 60.0
        self.restart()

    def restart(self) -> None:
        """Count from now: a checkpoint was just written, or training (re)starts."""
        self.steps, self.since = 0, monotonic()

    def due(self) -> bool:
        """Count one optimiser step and say whether a checkpoint is due after it (the caller restarts the count when it
        writes one). Called after every step, so it must be cheap: one clock read at most."""
        self.steps += 1
        if self.every_steps is not None and self.steps >= self.every_steps:
            return True
        return self.every_seconds is not None and monotonic() - self.since >= self.every_seconds


def validation_steps(every: int | float | None, steps: int) -> frozenset[int]:
    """The steps of an epoch of ``steps`` optimiser steps after which ``fit`` validates, besides the last (the epoch's
    end, where it always does): every ``every`` steps from the epoch's start for an integer, the steps nearest each
    multiple of the fraction ``every`` of the epoch for a float (0.25 of 37 steps: after steps 9, 18 and 28), none
    for None. The count restarts with each epoch, at its end-of-epoch validation."""
    if every is None:
        return frozenset()
    if isinstance(every, int):
        return frozenset(range(every, steps, every))
    multiples = takewhile(lambda i: i * every < 1, count(1))  # the multiples of the fraction inside (0, 1)
    return frozenset(step for step in (round(i * every * steps) for i in multiples) if 0 < step < steps)
