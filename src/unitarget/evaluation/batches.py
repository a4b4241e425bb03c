"""The evaluator on encoded ``Targets``: validation, per-head AP and the format study score
predictions on tensors, not on log tables, through the same ``evaluate_segments``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unitarget.contract import AD_FORMATS
from unitarget.data.batch import Targets
from unitarget.evaluation.evaluate import EvalTarget, evaluate_segments
from unitarget.evaluation.result import EvaluationResult
from unitarget.evaluation.segments import ALL


def label_arrays(targets: Targets, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """label -> (n,) float64, NaN where not observed (``labels`` names the label columns)."""
    y = targets.labels.numpy().astype(np.float64)
    y[~targets.label_mask.numpy()] = np.nan
    return {label: y[:, j] for j, label in enumerate(labels)}


def batch_formats(targets: Targets) -> np.ndarray:
    """(n,) format name of each encoded row (None for null or other formats)."""
    return format_names(targets.format.numpy())


def format_names(index: np.ndarray) -> np.ndarray:
    """(n,) format name of each ``Targets.format`` index (None for null or other formats)."""
    names = np.array([*AD_FORMATS, None], dtype=object)
    return names[index]


def evaluate_batch(
    probabilities: np.ndarray,
    task_names: Sequence[str],
    targets: Targets,
    *,
    sources: Sequence[str],
    labels: Sequence[str],
    scored: Sequence[EvalTarget],
    segments: Sequence[str] = (ALL,),
) -> EvaluationResult:
    """Score (n, T) ``probabilities`` (columns in ``task_names`` order) on encoded ``targets`` for
    the ``scored`` targets; ``sources`` and ``labels`` name the source indices and label columns."""
    predictions = {task: probabilities[:, j] for j, task in enumerate(task_names)}
    source = np.asarray(sources, dtype=object)[targets.source.numpy()]
    formats = batch_formats(targets) if targets.format is not None else None
    return evaluate_segments(predictions, label_arrays(targets, labels), source, targets.tier.numpy(), scored,
                             formats=formats, segments=segments)
