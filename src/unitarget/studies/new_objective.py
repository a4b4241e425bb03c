"""Transfer to a new objective (issue 3): a learning curve against the new objective's log size.

The new objective is *stream after a promotion on a surface the model has never seen*: every
impression on ``surface`` is removed from pre-training (so the surface is even out of the
encoder's vocabulary), then a head ``<surface>_stream`` is learned from 1 %…100 % of that
surface's training log. Four ways to get it, each evaluated on the surface's test impressions:

- zero-shot: the pre-trained model's promotion stream head, applied as it is;
- fine-tune with a frozen encoder (the new head starts as a copy of ``promo_stream``);
- fine-tune everything (old tasks keep training beside the new one);
- a model trained from scratch on the small log alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.config import Config, TaskSpec, merge
from unitarget.errors import UnitargetError
from unitarget.evaluation import ADS_STREAM, PROMOTIONS_STREAM, EvalTarget, average_precision
from unitarget.evaluation.segments import ALL
from unitarget.pipeline import TrainedModel, finetune, train
from unitarget.presets import apply_preset

FRACTIONS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
METHODS = ("zero-shot", "fine-tune, frozen encoder", "fine-tune, all layers", "from scratch")


@dataclass(frozen=True)
class CurvePoint:
    """One point of a learning curve: a method, the fraction of the new surface's training log it learned from, that
    log's rows, and test AP (NaN when the log was too small)."""

    method: str
    fraction: float
    rows: int
    ap: float


@dataclass(frozen=True)
class NewObjectiveResult:
    """The new-objective study: the held-out surface, every learning-curve point, the oracle AP on its test rows, and
    the old heads' AP before and after fine-tuning."""

    surface: str
    points: list[CurvePoint]
    oracle_ap: float
    #: old heads' AP on the other surfaces' test rows: before, and after unfrozen fine-tuning on 100 %
    old_heads_before: dict[str, float]
    old_heads_after: dict[str, float]


def _on_surface(table: pa.Table, surface: str) -> pa.Array:
    return pc.fill_null(pc.equal(table.column("surface").cast(pa.string()), surface), False)


def _subsample(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    if fraction >= 1:
        return table
    keep = np.random.default_rng(seed).random(table.num_rows) < fraction
    return table.filter(pa.array(keep))


def _ap(model: TrainedModel, rows: pa.Table, task: str) -> float:
    """AP of head ``task`` on stream over ``rows`` (the surface's test impressions)."""
    target = EvalTarget(task, task, contract.REQUIRED_LABEL, None)
    return model.evaluate(rows, [target], segments=(ALL,)).ap(task)


def run_new_objective_study(
    train_rows: pa.Table,
    test_rows: pa.Table,
    out_dir: Path,
    config: Config,
    *,
    surface: str = "search",
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> NewObjectiveResult:
    """Pre-train the unified model without ``surface``, then learn ``<surface>_stream`` from each fraction of its log
    (zero-shot, frozen or full fine-tuning, from scratch), scored on its test rows."""
    new_train = train_rows.filter(_on_surface(train_rows, surface))
    new_test = test_rows.filter(_on_surface(test_rows, surface))
    old_test = test_rows.filter(pc.invert(_on_surface(test_rows, surface)))
    if new_train.num_rows == 0 or new_test.num_rows == 0:
        raise ValueError(f"no impressions on surface {surface!r} to learn or test the new objective on")
    log(f"pre-training the unified model without surface {surface!r}")
    base = train(train_rows.filter(pc.invert(_on_surface(train_rows, surface))), out_dir / "pretrained",
                 merge(apply_preset(config, "unified"), {"train": {"seed": seed}}))
    task = TaskSpec(name=f"{surface}_stream", label=contract.REQUIRED_LABEL, sources=(contract.PROMOTIONS,))
    points = [CurvePoint("zero-shot", f, 0, _ap(base, new_test, "promo_stream")) for f in fractions]
    after: dict[str, float] = {}
    for fraction in fractions:
        small = _subsample(new_train, fraction, seed)
        log(f"{fraction:.0%} of the {surface!r} log: {small.num_rows:,} impressions")
        runs = {
            "fine-tune, frozen encoder": lambda: finetune(base, small, out_dir / f"frozen-{fraction}", task,
                                                          freeze_encoder=True, init_from="promo_stream"),
            "fine-tune, all layers": lambda: finetune(base, small, out_dir / f"unfrozen-{fraction}", task,
                                                      init_from="promo_stream"),
            "from scratch": lambda: train(small, out_dir / f"scratch-{fraction}", merge(config, {
                "tasks": [task.model_dump()], "train": {"seed": seed},
                "evaluation": {"stream_task_for": {contract.PROMOTIONS: task.name}}})),
        }
        for method, run in runs.items():
            try:
                model = run()
            except UnitargetError as err:  # a 1 % log can be too small to split; say so in the curve
                log(f"  {method}: skipped ({err})")
                points.append(CurvePoint(method, fraction, small.num_rows, float("nan")))
                continue
            points.append(CurvePoint(method, fraction, small.num_rows, _ap(model, new_test, task.name)))
            if method == "fine-tune, all layers" and fraction == max(fractions):
                after = _old_heads(model, old_test)
    truth_column = contract.true_probability_column(contract.REQUIRED_LABEL)
    labels = new_test.column(contract.REQUIRED_LABEL).cast(pa.float64()).to_numpy(zero_copy_only=False)
    oracle = (average_precision(labels, new_test.column(truth_column).to_numpy(zero_copy_only=False))
              if truth_column in new_test.column_names else float("nan"))
    return NewObjectiveResult(surface, points, oracle, _old_heads(base, old_test), after)


def _old_heads(model: TrainedModel, rows: pa.Table) -> dict[str, float]:
    result = model.evaluate(rows)
    return {target: result.ap(target) for target in (PROMOTIONS_STREAM, ADS_STREAM)}
