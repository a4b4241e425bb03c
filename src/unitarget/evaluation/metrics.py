"""Offline metrics as pure functions of numpy arrays.

Every metric takes ``y`` (labels: 1.0, 0.0, or NaN for "not observed") and ``p`` (predicted
probabilities), both of shape (n,), drops the rows whose label is NaN — a null label is never read
as a negative (docs/data-contract.md) — and returns a float. A metric that is undefined on the
observed rows is NaN, never 0: a slice with no positives has no precision-recall curve, and no rows
at all leave every metric undefined.

Average precision and ROC-AUC are our own sort-based implementations, not sklearn calls: the
segment evaluator sorts each target's predictions once and slices that order per segment (a subset
of a sorted sequence is still sorted), so it needs the ``*_sorted`` kernels below. They agree with
``sklearn.metrics.average_precision_score`` and ``roc_auc_score`` to 1e-6, ties included
(tests/test_metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

#: log_loss clips probabilities to [EPS, 1 - EPS] so a confident miss costs ~16 nats, not inf.
LOG_LOSS_EPS = 1e-7

Metric = Callable[[np.ndarray, np.ndarray], float]


def observed(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose label is observed, as float64 ``(y, p)``; checks labels are 0/1 and p finite."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape:
        raise ValueError(f"y and p must be 1-D arrays of equal length, got shapes {y.shape} and {p.shape}")
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    bad = (y != 0.0) & (y != 1.0)
    if bad.any():
        raise ValueError(f"labels must be 0, 1 or NaN; found {np.unique(y[bad])[:5].tolist()}")
    if not np.isfinite(p).all():
        n_bad = int((~np.isfinite(p)).sum())
        raise ValueError(f"predictions must be finite on observed rows; {n_bad} are not")
    return y, p


def sort_descending(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, p)`` reordered by descending score (stable; tie order does not affect the metrics)."""
    order = np.argsort(-p, kind="stable")
    return y[order], p[order]


def _curve(y_desc: np.ndarray, p_desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct threshold, highest threshold first.

    Tied scores form one threshold (the last index of each run of equal scores), as in sklearn.
    """
    ends = np.r_[np.flatnonzero(np.diff(p_desc)), y_desc.size - 1]
    tps = np.cumsum(y_desc)[ends]
    fps = (ends + 1) - tps
    return tps, fps


def average_precision_sorted(y_desc: np.ndarray, p_desc: np.ndarray) -> float:
    """AP of observed labels already sorted by descending score (no NaN labels).

    AP = sum_k (R_k - R_{k-1}) * P_k over distinct thresholds k, with R_0 = 0: the step-wise
    area under the precision-recall curve (sklearn's definition, no interpolation).
    """
    if y_desc.size == 0:
        return float("nan")
    tps, fps = _curve(y_desc, p_desc)
    n_pos = tps[-1]
    if n_pos == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall_step = np.diff(tps, prepend=0.0) / n_pos
    return float(np.sum(recall_step * precision))


def roc_auc_sorted(y_desc: np.ndarray, p_desc: np.ndarray) -> float:
    """ROC-AUC of observed labels already sorted by descending score; NaN without both classes.

    Trapezoidal area under (FPR, TPR) over distinct thresholds, i.e. the Mann-Whitney statistic
    P(score of a positive > score of a negative) with ties counted 1/2.
    """
    if y_desc.size == 0:
        return float("nan")
    tps, fps = _curve(y_desc, p_desc)
    n_pos, n_neg = tps[-1], fps[-1]
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tpr = np.r_[0.0, tps] / n_pos
    fpr = np.r_[0.0, fps] / n_neg
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision over observed rows; NaN when there are no positives (or no rows)."""
    return average_precision_sorted(*sort_descending(*observed(y, p)))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC over observed rows; NaN unless both classes are present."""
    return roc_auc_sorted(*sort_descending(*observed(y, p)))


def log_loss_observed(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of already-observed rows (see :func:`log_loss`)."""
    if y.size == 0:
        return float("nan")
    pc = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(pc) + (1.0 - y) * np.log1p(-pc)))


def calibration_observed(y: np.ndarray, p: np.ndarray) -> float:
    """mean(p) / mean(y) of already-observed rows (see :func:`calibration_ratio`)."""
    if y.size == 0:
        return float("nan")
    rate = float(np.mean(y))
    if rate == 0.0:
        return float("nan")
    return float(np.mean(p)) / rate


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """-mean(y log p + (1 - y) log(1 - p)) over observed rows, p clipped to [1e-7, 1 - 1e-7]."""
    return log_loss_observed(*observed(y, p))


def calibration_ratio(y: np.ndarray, p: np.ndarray) -> float:
    """mean(p) / observed positive rate: 1 is calibrated, > 1 over-predicts; NaN without positives."""
    return calibration_observed(*observed(y, p))


def by_segment(
    metric: Metric, y: np.ndarray, p: np.ndarray, masks: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """``metric`` on each boolean row mask: ``{segment: metric(y[mask], p[mask])}``."""
    y = np.asarray(y)
    p = np.asarray(p)
    return {name: metric(y[mask], p[mask]) for name, mask in masks.items()}
