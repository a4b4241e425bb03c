"""What each encoder costs: parameters, training examples/s and prediction rows/s on the same rows.

A training step here is the loop's own step (take rows -> forward -> masked per-task losses ->
backward -> Adam), timed over ``steps`` batches after a warm-up; prediction is
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
from unitarget.models import MultiTaskModel, build_model
from unitarget.scoring import predict_probabilities
from unitarget.training.sampling import NaturalSampler
from unitarget.training.schedule import make_optimizer
from unitarget.training.tasks import TaskSet


@dataclass(frozen=True)
class Cost:
    name: str
    display: str
    parameters: int
    train_examples_per_s: float
    predict_rows_per_s: float


def _train_speed(model: MultiTaskModel, config: Config, data: Batch, steps: int, warmup: int = 3) -> float:
    tasks = TaskSet(config.tasks, config.sources)
    optimizer = make_optimizer(model.parameters(), config.optim)
    batches = iter(NaturalSampler(len(data), config.train.batch_size, 0).epoch(0))
    model.train()
    seen, started = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            seen, started = 0, time.perf_counter()
        try:
            index = next(batches)
        except StopIteration:
            batches = iter(NaturalSampler(len(data), config.train.batch_size, 0).epoch(step))
            index = next(batches)
        batch = data.take(index)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.train.bf16):
            logits = model(batch.features)
        loss = tasks.losses(logits, batch.targets).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(index)
    return seen / (time.perf_counter() - started)


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
    torch.manual_seed(config.train.seed)
    tasks = TaskSet(config.tasks, config.sources)
    model = build_model(config.model, layout, tasks.names, config.task_groups())
    steps = max(2, min(steps, len(data) // config.train.batch_size))  # at most one pass over the rows
    train_speed = _train_speed(model, config, data, steps)
    rows = data.slice(0, min(predict_rows, len(data)))
    warm_up = rows.slice(0, min(len(rows), 16_384))
    predict_probabilities(model, warm_up.features, config.train.eval_batch_size)
    if masked_by_format:
        predict_speed = _predict_masked(model, config, rows)
    else:
        started = time.perf_counter()
        predict_probabilities(model, rows.features, config.train.eval_batch_size, config.train.bf16)
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
