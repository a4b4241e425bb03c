"""The evaluator on an encoded ``Batch``: validation, per-head AP and the format study score
predictions on tensors, not on log tables, through the same ``evaluate_segments``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unitarget.contract import AD_FORMATS
from unitarget.data.batch import Batch
from unitarget.evaluation.evaluate import EvalTarget, evaluate_segments
from unitarget.evaluation.result import EvaluationResult
from unitarget.evaluation.segments import ALL


def label_arrays(batch: Batch, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """label -> (n,) float64, NaN where not observed (``labels`` names the batch's label columns)."""
    y = batch.labels.numpy().astype(np.float64)
    y[~batch.label_mask.numpy()] = np.nan
    return {label: y[:, j] for j, label in enumerate(labels)}


def batch_formats(batch: Batch) -> np.ndarray:
    """(n,) format name of each row of an encoded batch (None for null or other formats)."""
    names = np.array([*AD_FORMATS, None], dtype=object)
    return names[batch.format.numpy()]


def evaluate_batch(
    probabilities: np.ndarray,
    task_names: Sequence[str],
    batch: Batch,
    *,
    sources: Sequence[str],
    labels: Sequence[str],
    targets: Sequence[EvalTarget],
    segments: Sequence[str] = (ALL,),
) -> EvaluationResult:
    """Score (n, T) ``probabilities`` (columns in ``task_names`` order) on ``batch`` for ``targets``;
    ``sources`` and ``labels`` name the batch's source indices and label columns."""
    predictions = {task: probabilities[:, j] for j, task in enumerate(task_names)}
    source = np.asarray(sources, dtype=object)[batch.source.numpy()]
    formats = batch_formats(batch) if batch.format is not None else None
    return evaluate_segments(predictions, label_arrays(batch, labels), source, batch.tier.numpy(), targets,
                             formats=formats, segments=segments)
