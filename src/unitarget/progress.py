"""Progress for people: one line per validation of a training (one per epoch by default), under a
live bar of the epoch on a terminal; a bar per pass of the encoded cache's build on a terminal, one
line per pass elsewhere (CI, logs); nothing while a log is scored (the command's own output follows)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_REFRESH_EVERY_STEPS = 10


class RichTrainingHooks:
    """Implements ``training.loop.TrainingHooks`` with rich."""

    def __init__(self, console: Console, label: str = "train") -> None:
        self.console = console
        self.label = label
        self.live = console.is_terminal
        self._progress: Progress | None = None
        self._task: Any = None

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        """Advance the live bar (terminals only) every 10 steps and on the last; ``epoch`` counts from 0, the bar shows
        it from 1."""
        if not self.live or (step % _REFRESH_EVERY_STEPS and step != steps):
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:,.0f} ex/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
            )
            self._progress.start()
        description = f"{self.label} epoch {epoch + 1}"
        if self._task is None:
            self._task = self._progress.add_task(description, total=steps, loss=loss, speed=examples_per_s)
        self._progress.update(self._task, description=description, completed=step, total=steps,
                              loss=loss, speed=examples_per_s)

    def on_validation(self, record: dict[str, Any]) -> None:
        """Print one line per validation: the epoch (and how much of it is done, inside one), the mean loss since the
        previous validation, examples/s, the validation score (n/a when not finite) and whether it is the best so
        far. On a terminal the line goes above the live bar."""
        score = record["valid_score"]
        score_text = f"{score:.4f}" if math.isfinite(score) else "n/a"
        inside = f" ({record['fraction']:.0%})" if record["fraction"] < 1 else ""
        self.console.print(
            f"{self.label} epoch {record['epoch'] + 1}{inside}: loss {record['train_loss']:.4f}, "
            f"{record['examples_per_s']:,.0f} examples/s, validation AP {score_text}"
            + (" (best)" if record["improved"] else ""),
            soft_wrap=True,
        )

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """Close the epoch's bar (its last validation's line is printed)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None

    def on_refit(self, rows: int, steps: int) -> None:
        """Close selection's bar, say what the refit trains, and label the bars that follow ``refit``."""
        self.on_epoch_end({})
        self.console.print(f"{self.label}: refit on all {rows:,} rows, the validation days included, for {steps:,} "
                           f"steps (the selected model's epochs)")
        self.label = f"{self.label} refit"


_PASSES = {"scan": "validating the log", "fit": "fitting the encoder", "encode": "encoding into the cache"}


class RichCacheProgress:
    """Reports the encoded cache's three passes over the log (``streaming.Progress``): a bar over the log's rows on a
    terminal, one line per finished pass elsewhere."""

    def __init__(self, console: Console, total_rows: int) -> None:
        self.console, self.total = console, total_rows
        self._progress: Progress | None = None
        self._task: Any = None
        self._phase: str | None = None

    def __call__(self, phase: str, rows: int) -> None:
        """``rows`` of the log read so far by pass ``phase``."""
        if phase != self._phase:
            self._phase = phase
            if self.console.is_terminal:
                if self._progress is None:
                    self._progress = Progress(
                        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=self.console, transient=True)
                    self._progress.start()
                self._task = self._progress.add_task(_PASSES.get(phase, phase), total=self.total)
        if self._progress is not None:
            self._progress.update(self._task, completed=rows)
        if rows >= self.total:
            self.console.print(f"{_PASSES.get(phase, phase)}: {rows:,} rows", soft_wrap=True)

    def close(self) -> None:
        """Stop the live bar (after the last pass, or when the build fails)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def row_progress(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over the ``total`` rows of a log streamed in chunks; the callable it yields takes the
    rows done so far (``on_chunk`` of ``pipeline.evaluate_log``). The bar is removed when done."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


class RichCountBar:
    """A live bar for a long library call that reports ``(done, total)``, such as ``write_synthetic_dataset``'s
    ``on_rows``: it pulses under ``waiting`` until the first report, then counts ``done`` of ``total`` under
    ``counting`` with the time left. A context manager; silent where the console is not a terminal."""

    def __init__(self, console: Console, waiting: str, counting: str) -> None:
        self.counting = counting
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal,
        )
        self._task = self._progress.add_task(waiting, total=None)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``."""
        self._progress.update(self._task, description=self.counting, completed=done, total=total)
