"""What a study writes into its directory: ``best.toml``, ``trials.csv`` and ``trials.png``.

``best.toml`` is the whole configuration of the best trial (base configuration and its settings), which
``unitarget train --config DIR/best.toml`` reads back as it is. ``trials.csv`` has one row per trial: number, state,
score, seconds, a note (why a trial was pruned) and one column per tuned setting. ``trials.png`` plots each trial's
score in order with the running best; a pruned trial is a cross at its last reported score.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from unitarget.config import Config
from unitarget.io import atomic_write_text
from unitarget.reports.charts import figure, save_png
from unitarget.toml_writer import config_toml

BEST_FILE = "best.toml"
TRIALS_CSV = "trials.csv"
TRIALS_CHART = "trials.png"


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the study stored it: its state (COMPLETE, PRUNED, FAIL, RUNNING), its score (a complete trial's
    best validation score; a pruned trial's last reported one), its settings as recorded, seconds and a note."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    note: str = ""

    @classmethod
    def of(cls, trial: Any) -> "TrialSummary":
        """From an ``optuna.trial.FrozenTrial``."""
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        return cls(trial.number, trial.state.name, value, dict(trial.params), seconds,
                   str(trial.user_attrs.get("note", "")))


def write_outputs(out: Path, trials: Sequence[TrialSummary], keys: Sequence[str], best: Config | None) -> list[Path]:
    """Write the table, the chart and (once a trial completed) ``best.toml``; return the paths written."""
    atomic_write_text(out / TRIALS_CSV, trials_csv(trials, keys))
    trials_chart(trials, out / TRIALS_CHART)
    paths = [out / TRIALS_CSV, out / TRIALS_CHART]
    if best is not None:
        atomic_write_text(out / BEST_FILE, config_toml(best))
        paths.append(out / BEST_FILE)
    return paths


def trials_csv(trials: Sequence[TrialSummary], keys: Sequence[str]) -> str:
    """One row per trial; empty cells for a value or setting it has not got."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", "seconds", "note", *keys])
    for t in trials:
        writer.writerow([t.number, t.state, _num(t.value), _num(t.seconds), t.note,
                         *(t.params.get(k, "") for k in keys)])
    return buffer.getvalue()


def trials_chart(trials: Sequence[TrialSummary], path: Path) -> None:
    """Score per trial in order (complete: dots; pruned: crosses), and the running best of the complete ones."""
    fig, ax = figure()
    scored = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    complete = [t for t in scored if t.state == "COMPLETE"]
    pruned = [t for t in scored if t.state == "PRUNED"]
    ax.plot([t.number for t in complete], [t.value for t in complete], "o", color="C0", label="complete")
    ax.plot([t.number for t in pruned], [t.value for t in pruned], "x", color="0.5", label="pruned (last score)")
    best, running = -math.inf, []
    for t in complete:
        best = max(best, t.value)
        running.append(best)
    ax.step([t.number for t in complete], running, where="post", color="C1", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("best validation score (mean AP)")
    ax.set_title(f"{len(trials)} trials: {len(complete)} complete, {len(pruned)} pruned")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    save_png(fig, path)


def _num(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"
