"""Format-aware evaluation: AP of each label on each ad format, scored by the head serving it.

A model with per-format heads (``click_audio``, ``click_video`` ...) serves an impression of format
f with f's head; a model with one ``click`` head serves every format with it. ``format_task`` makes
that choice from the task specs, so every architecture is scored on the same rows with the head it
would serve them with. The "all" row pools the routed predictions of every format: the AP of the
model as served, across formats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unitarget.config import TaskSpec
from unitarget.contract import AD_FORMATS
from unitarget.evaluation.metrics import average_precision

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


def format_task(tasks: Sequence[TaskSpec], label: str, fmt: str) -> str | None:
    """The head that serves ``label`` on impressions of format ``fmt``, in order of preference:

    1. a task of that label whose ``formats`` include ``fmt`` (the format mask says it is f's head);
    2. a task named ``<label>_<fmt>`` (a per-format head trained without the format mask);
    3. a task of that label without a format filter (one head for every format);

    None when the model has no head for it (a single-task model of another format).
    """
    with_label = [t for t in tasks if t.label == label]
    for rule in (
        lambda t: t.formats is not None and fmt in t.formats,
        lambda t: t.name == f"{label}_{fmt}",
        lambda t: t.formats is None,
    ):
        found = [t.name for t in with_label if rule(t)]
        if found:
            return found[0]
    return None


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
        tasks: the model's task specs (for ``format_task``).
        label_names: labels to score, e.g. ("click", "stream").
        true_probabilities: label -> (n,) true probability (synthetic data), for the oracle AP.

    Returns:
        For each label: one row per format of ``AD_FORMATS`` that has a head, then the ALL_FORMATS
        row when every format has one.
    """
    formats = np.asarray(formats, dtype=object)
    truths = true_probabilities or {}
    rows: list[FormatRow] = []
    for label in label_names:
        y = np.asarray(labels[label], dtype=np.float64)
        routed = np.full(y.shape, np.nan)
        heads = []
        for fmt in AD_FORMATS:
            task = format_task(tasks, label, fmt)
            if task is None:
                continue
            rows_f = formats == fmt
            routed[rows_f] = predictions[task][rows_f]
            heads.append(task)
            rows.append(_row(label, fmt, task, y, predictions[task], rows_f, truths.get(label)))
        if len(heads) == len(AD_FORMATS):
            served = np.isin(formats, AD_FORMATS)
            rows.append(_row(label, ALL_FORMATS, "+".join(dict.fromkeys(heads)), y, routed, served,
                             truths.get(label)))
    return rows


def _row(label: str, fmt: str, task: str, y: np.ndarray, p: np.ndarray, rows: np.ndarray,
         truth: np.ndarray | None) -> FormatRow:
    keep = rows & ~np.isnan(y)
    oracle = float("nan") if truth is None else average_precision(y[keep], np.asarray(truth)[keep])
    return FormatRow(label=label, format=fmt, task=task, n=int(keep.sum()), n_pos=int(y[keep].sum()),
                     ap=average_precision(y[keep], np.asarray(p)[keep]), oracle_ap=oracle)
