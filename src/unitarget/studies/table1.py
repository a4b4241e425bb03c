"""The offline study behind the paper's Table 1: named setups trained on the same older days and
evaluated on the same newest days (``reports.table1`` and ``reports.reproduction`` render it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from unitarget.config import Config
from unitarget.evaluation import EvaluationResult
from unitarget.evaluation.informed import InformedOracle
from unitarget.io import atomic_write_json
from unitarget.pipeline import train
from unitarget.training.hooks import SilentHooks, TrainingHooks


@dataclass(frozen=True)
class SetupRuns:
    """Per setup, in training order: its evaluation on the test rows and its ``training.json``."""

    results: dict[str, EvaluationResult]
    training: dict[str, dict[str, Any]]


def run_setups(
    train_rows: pa.Table,
    test_rows: pa.Table,
    out: Path,
    setups: Mapping[str, Config],
    *,
    hooks_for: Callable[[str], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
    informed: InformedOracle | None = None,
) -> SetupRuns:
    """Train each setup into ``out/runs/<name>`` and evaluate it on ``test_rows`` (with the informed
    oracle's AP when ``informed`` is given); each evaluation is also saved as
    ``out/evaluations/<name>.json``."""
    results: dict[str, EvaluationResult] = {}
    training: dict[str, dict[str, Any]] = {}
    for name, setup in setups.items():
        run_dir = out / "runs" / name
        log(f"training {name}")
        trained = train(train_rows, run_dir, setup, hooks=hooks_for(name))
        results[name] = trained.evaluate(test_rows, informed=informed)
        training[name] = trained.record.to_dict()
        atomic_write_json(out / "evaluations" / f"{name}.json", results[name].to_dict())
    return SetupRuns(results, training)
