"""The real-data study: on a public log converted to the contract, the unified model against
single-source models and the linear baseline, on the newest days, with bootstrap intervals.

Real logs have few positives (the Open Bandit sample's test days hold a few hundred clicks), so
every AP comes with its 95 % percentile bootstrap interval over the test rows and the count of
positives it rests on; two models whose intervals overlap are not told apart by this log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.config import Config
from unitarget.data.split import split_newest_days
from unitarget.evaluation.bootstrap import Interval, bootstrap_interval
from unitarget.evaluation.heads import channel_targets
from unitarget.evaluation.metrics import average_precision
from unitarget.pipeline import TrainedModel, load_log, load_model, train, trained_on
from unitarget.presets import apply_preset


@dataclass(frozen=True)
class ScoredTarget:
    """One model's AP on one channel of the test rows."""

    ap: Interval
    rows: int
    positives: int


@dataclass
class RealDataResult:
    """Per setup and channel target, the AP with its interval; the split; where the runs are."""

    dataset: str
    setups: list[str]
    scores: dict[str, dict[str, ScoredTarget]] = field(default_factory=dict)  # setup -> target -> score
    split: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Path] = field(default_factory=dict)
    test_rows: pa.Table | None = None  # the newest rows every setup was scored on (for off-policy estimates)

    def to_dict(self) -> dict[str, Any]:
        """For ``real_data.json``."""
        return {
            "dataset": self.dataset, "split": self.split,
            "scores": {setup: {target: {"ap": s.ap.to_dict(), "rows": s.rows, "positives": s.positives}
                               for target, s in targets.items()} for setup, targets in self.scores.items()},
        }


def score_channels(model: TrainedModel, table: pa.Table, *, resamples: int, seed: int) -> dict[str, ScoredTarget]:
    """AP of each channel target of ``model`` (Promotions AP, Ads AP, the other heads) on the
    rows of ``table`` it counts, with a bootstrap interval; targets without rows are left out."""
    probs = model.probabilities(table)
    source = table.column(contract.SOURCE).cast(pa.string()).to_numpy(zero_copy_only=False)
    scored: dict[str, ScoredTarget] = {}
    for target in channel_targets(model.config):
        if target.label not in table.column_names:
            continue
        labels = table.column(target.label).cast(pa.float64()).to_numpy(zero_copy_only=False)
        keep = ~np.isnan(labels)
        if target.source is not None:
            keep &= np.isin(source, np.atleast_1d(target.source))
        y, p = labels[keep], probs[keep, model.model.task_names.index(target.task)]
        if y.sum() == 0:
            continue
        interval = bootstrap_interval(lambda rows: average_precision(y[rows], p[rows]), len(y),
                                      resamples=resamples, seed=seed)
        scored[target.name] = ScoredTarget(interval, int(len(y)), int(y.sum()))
    return scored


def run_real_data_study(data: str | Path | pa.Table, out: Path, config: Config, setups: Sequence[str], *,
                        dataset: str, resamples: int = 1_000, seed: int = 0,
                        log: Callable[[str], None] = lambda _: None) -> RealDataResult:
    """Hold out the newest ``evaluation.test_days`` (the short-log rule applies), train each
    preset of ``setups`` on the older rows into ``out/runs/<setup>`` (a finished identical run is
    reused) and score it on the newest."""
    table = load_log(data, config)
    testing = split_newest_days(table, config.evaluation.test_days, purpose="testing",
                                setting="evaluation.test_days")
    result = RealDataResult(dataset, list(setups), split={
        "train_rows": testing.older.num_rows, "test_rows": testing.newest.num_rows, **testing.to_dict(),
        "test_rows_by_source": _rows_by_source(testing.newest)}, test_rows=testing.newest)
    for name in setups:
        setup_config = apply_preset(config, name)
        run_dir = out / "runs" / name
        if trained_on(run_dir, testing.older, setup_config):
            log(f"{dataset}: reusing {name}")
            model = load_model(run_dir)
        else:
            log(f"{dataset}: training {name}")
            model = train(testing.older, run_dir, setup_config)
        result.runs[name] = run_dir
        result.scores[name] = score_channels(model, testing.newest, resamples=resamples, seed=seed)
    return result


def _rows_by_source(table: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(table.column(contract.SOURCE).cast(pa.string()))
    return {row["values"]: row["counts"] for row in counts.to_pylist()}
