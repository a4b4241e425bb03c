"""What each encoder costs: parameters, training examples/s and prediction rows/s on the same rows.

A training step here is the loop's own step (``training.loop.fit`` on the ``training.setup`` of the
configuration: take rows -> forward -> masked per-task losses -> balance -> backward -> Adam ->
schedule), timed through its step hook over ``steps`` batches after a warm-up; prediction is
``scoring.predict_probabilities`` over ``predict_rows`` rows. "Masked by format" scores each
format's rows with its own tasks only (``MultiTaskModel.forward_tasks``): the inference-time expert
masking the CAMoE paper did not deploy, measured here with rows already grouped by format, as a
request for one ad slot would arrive.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unitarget.config import Config
from unitarget.contract import AD_FORMATS
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureLayout
from unitarget.models import MultiTaskModel
from unitarget.scoring import predict_probabilities
from unitarget.training.batches import FirstBatches
from unitarget.training.hooks import SilentHooks
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import TrainingSetup, build_setup


@dataclass(frozen=True)
class Cost:
    """What one encoder costs on the same rows: all its parameters, training examples/s of the loop's step after a
    warm-up, and prediction rows/s."""

    name: str
    display: str
    parameters: int
    train_examples_per_s: float
    predict_rows_per_s: float


class _StepClock(SilentHooks):
    """Training hooks that time the steps after a warm-up: examples/s of the loop's own step."""

    def __init__(self, warmup: int, batch_size: int) -> None:
        self.warmup, self.batch_size = warmup, batch_size
        self.started = self.stopped = time.perf_counter()  # (no warm-up: from the start of fit)
        self.timed_steps = 0

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        if step == self.warmup:
            self.started = time.perf_counter()
        elif step > self.warmup:
            self.stopped, self.timed_steps = time.perf_counter(), step - self.warmup

    @property
    def examples_per_s(self) -> float:
        return self.timed_steps * self.batch_size / (self.stopped - self.started)


def _train_speed(setup: TrainingSetup, config: Config, data: Batch, steps: int, warmup: int = 3) -> float:
    """Examples/s of ``training.loop.fit`` itself (sampler, balancer, schedule and all) over
    ``steps`` batches after ``warmup`` untimed ones; one epoch, validation left out of the timing."""
    clock = _StepClock(warmup, config.train.batch_size)
    fit(setup.model, setup.tasks, FirstBatches(setup.batches, warmup + steps),
        balancer=setup.balancer, validate=lambda _: (0.0, {}),
        train_config=config.train.model_copy(update={"max_epochs": 1}), optim_config=config.optim,
        store=MemoryStore(), hooks=clock)
    return clock.examples_per_s


def _format_task_index(config: Config, model: MultiTaskModel) -> dict[int, list[int]]:
    """Format index -> indices of the tasks serving it (tasks without a format filter serve all)."""
    names = model.task_names
    return {
        f: [names.index(t.name) for t in config.tasks if t.formats is None or fmt in t.formats]
        for f, fmt in enumerate(AD_FORMATS)
    }


@torch.inference_mode()
def _predict_masked(model: MultiTaskModel, config: Config, data: Batch) -> float:
    """Rows/s scoring each format's rows with its own tasks only (rows grouped beforehand)."""
    model.eval()
    slices = [(data.features.take(torch.nonzero(data.targets.format == f).squeeze(1)), tasks)
              for f, tasks in _format_task_index(config, model).items() if tasks]
    started, rows = time.perf_counter(), 0
    for part, tasks in slices:
        for start in range(0, len(part), config.train.eval_batch_size):
            chunk = part.slice(start, min(start + config.train.eval_batch_size, len(part)))
            torch.sigmoid(model.forward_tasks(chunk, tasks))
            rows += len(chunk)
    return rows / (time.perf_counter() - started)


def measure_cost(name: str, display: str, config: Config, layout: FeatureLayout, data: Batch, *,
                 steps: int = 30, predict_rows: int = 100_000, masked_by_format: bool = False) -> Cost:
    """Cost of the model ``config`` describes, trained and scored on rows of ``data``."""
    setup = build_setup(config, layout, data)
    model = setup.model
    warmup = min(3, max(0, len(setup.batches) - 2))
    steps = max(1, min(steps, len(setup.batches) - warmup))  # at most one pass over the rows
    train_speed = _train_speed(setup, config, data, steps, warmup)
    rows = data.slice(0, min(predict_rows, len(data)))
    warm_up = rows.slice(0, min(len(rows), 16_384))
    predict_probabilities(model, warm_up.features, config.train.eval_batch_size)
    if masked_by_format:
        predict_speed = _predict_masked(model, config, rows)
    else:
        started = time.perf_counter()
        predict_probabilities(model, rows.features, config.train.eval_batch_size, config.train.use_bf16)
        predict_speed = len(rows) / (time.perf_counter() - started)
    return Cost(name, display, sum(p.numel() for p in model.parameters()), train_speed, predict_speed)


#: (name, display, model overrides, masked_by_format): the encoders compared, all on per-format tasks.
COST_ROWS: tuple[tuple[str, str, dict, bool], ...] = (
    ("shared_bottom", "shared-bottom", {"encoder": "shared_bottom"}, False),
    ("shared_bottom+dcn", "shared-bottom + DCN-v2 (2 layers, full rank)",
     {"encoder": "shared_bottom", "cross": {"layers": 2}}, False),
    ("shared_bottom+dcn-lr", "shared-bottom + DCN-v2 (2 layers, rank 64)",
     {"encoder": "shared_bottom", "cross": {"layers": 2, "rank": 64}}, False),
    ("mmoe", "MMoE", {"encoder": "mmoe"}, False),
    ("ple", "PLE (2 levels)", {"encoder": "ple", "experts": {"levels": 2}}, False),
    ("camoe-no-cross", "CAMoE without cross layers", {"encoder": "camoe"}, False),
    ("camoe", "CAMoE (DCN-v2 rank 64)", {"encoder": "camoe", "cross": {"layers": 2, "rank": 64}}, False),
    ("camoe-masked", "CAMoE, inference masked by format",
     {"encoder": "camoe", "cross": {"layers": 2, "rank": 64}}, True),
)


def encoder_costs(base: Config, layout: FeatureLayout, data: Batch, *, rows: Sequence[tuple] = COST_ROWS,
                  steps: int = 30, predict_rows: int = 100_000) -> list[Cost]:
    """``measure_cost`` for each of ``rows`` on the same data; ``base`` carries the per-format tasks."""
    from unitarget.config import merge

    return [
        measure_cost(name, display, merge(base, {"model": overrides}), layout, data, steps=steps,
                     predict_rows=predict_rows, masked_by_format=masked)
        for name, display, overrides, masked in rows
    ]
