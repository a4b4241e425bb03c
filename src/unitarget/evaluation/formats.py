"""Format-aware evaluation: AP of each label on each ad format, scored by the head serving it.

A model with per-format heads (``click_audio``, ``click_video`` ...) serves an impression of format
f with f's head; a model with one ``click`` head serves every format with it. ``evaluation.heads``
makes that choice from the task specs, so every architecture is scored on the same rows with the
head it would serve them with, by the one evaluator (``evaluate_segments``). The "all" row pools
the routed predictions of every format: the AP of the model as served, across formats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unitarget.config import TaskSpec
from unitarget.contract import AD_FORMATS
from unitarget.evaluation.evaluate import EvalTarget, evaluate_segments
from unitarget.evaluation.heads import format_targets
from unitarget.evaluation.segments import ALL

ALL_FORMATS = "all"


@dataclass(frozen=True)
class FormatRow:
    """AP of one label on the impressions of one format (or ``"all"``), with the head used."""

    label: str
    format: str  # one of AD_FORMATS or ALL_FORMATS
    task: str  # head whose predictions were scored ("+"-joined per format for ALL_FORMATS)
    n: int
    n_pos: int
    ap: float
    oracle_ap: float  # AP of the true probabilities on the same rows; NaN when unknown


def evaluate_formats(
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    formats: np.ndarray,
    tasks: Sequence[TaskSpec],
    label_names: Sequence[str],
    true_probabilities: Mapping[str, np.ndarray] | None = None,
) -> list[FormatRow]:
    """AP per (label, format), then per label on all formats with each row's own head.

    Args:
        predictions: task -> (n,) probability.
        labels: label -> (n,) 1/0/NaN (NaN = not observed).
        formats: (n,) format string of each impression (None or other values join no format).
        tasks: the model's task specs (for ``heads.format_targets``).
        label_names: labels to score, e.g. ("click", "stream").
        true_probabilities: label -> (n,) true probability (synthetic data), for the oracle AP.

    Returns:
        For each label: one row per format of ``AD_FORMATS`` that has a head, then the ALL_FORMATS
        row when every format has one.
    """
    formats = np.asarray(formats, dtype=object)
    truths = {k: v for k, v in (true_probabilities or {}).items() if k in label_names}
    predictions = dict(predictions)
    targets: list[EvalTarget] = []
    for label in label_names:
        per_format = format_targets(tasks, label)
        targets += per_format
        if len(per_format) == len(AD_FORMATS):  # the model as served: each row by its format's head
            routed = np.full(formats.shape, np.nan)
            for target in per_format:
                rows = formats == target.formats[0]
                routed[rows] = predictions[target.task][rows]
            heads = "+".join(dict.fromkeys(t.task for t in per_format))
            predictions[heads] = routed
            targets.append(EvalTarget(f"{label}_{ALL_FORMATS}", heads, label, None, tuple(AD_FORMATS)))
    result = evaluate_segments(predictions, labels, None, None, targets, truths or None, formats=formats,
                               segments=(ALL,))
    return [FormatRow(label=r.label, format=r.target.removeprefix(f"{r.label}_"), task=r.task, n=r.n,
                      n_pos=r.n_pos, ap=r.ap, oracle_ap=r.oracle_ap) for r in result.rows]
