"""Metrics agree with scikit-learn, ignore null labels and are NaN (never 0) where undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from unitarget.evaluation.metrics import (
    average_precision,
    by_segment,
    calibration_ratio,
    log_loss,
    roc_auc,
)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rounding", [None, 1, 2])  # rounded scores exercise ties
def test_agree_with_sklearn(seed: int, rounding: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = (rng.random(n) < rng.uniform(0.01, 0.5)).astype(float)
    p = rng.random(n)
    if rounding is not None:
        p = np.round(p, rounding)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-6)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-6)


def test_golden_values() -> None:
    y = np.array([1, 0, 1, 0, 0.0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    # precision at the two positives: 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision(y, p) == pytest.approx(5 / 6)
    assert roc_auc(y, p) == pytest.approx(5 / 6)  # 5 of 6 positive-negative pairs ordered


def test_nan_labels_are_ignored_not_negatives() -> None:
    y = np.array([1, np.nan, 0, np.nan, 1, 0.0])
    p = np.array([0.9, 0.99, 0.3, 0.95, 0.6, 0.5])
    keep = ~np.isnan(y)
    for metric in (average_precision, roc_auc, log_loss, calibration_ratio):
        assert metric(y, p) == pytest.approx(metric(y[keep], p[keep]))
    assert average_precision(y, p) == 1.0  # read as 0, the two NaN rows would rank first and lower AP


def test_no_positives_and_no_rows_are_nan() -> None:
    y = np.zeros(10)
    p = np.linspace(0, 1, 10)
    assert math.isnan(average_precision(y, p))
    assert math.isnan(roc_auc(y, p))
    assert math.isnan(calibration_ratio(y, p))
    assert not math.isnan(log_loss(y, p))  # defined without positives
    empty = np.array([np.nan, np.nan])
    for metric in (average_precision, roc_auc, log_loss, calibration_ratio):
        assert math.isnan(metric(empty, np.array([0.1, 0.2])))
        assert math.isnan(metric(np.array([]), np.array([])))


def test_only_positives_gives_ap_one_and_nan_auc() -> None:
    assert average_precision(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert math.isnan(roc_auc(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4])))


def test_log_loss_clips() -> None:
    y = np.array([1.0, 0.0])
    p = np.array([0.0, 1.0])
    assert log_loss(y, p) == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_calibration_of_calibrated_probabilities_is_one() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(1, 20, size=200_000)
    y = (rng.random(p.size) < p).astype(float)
    assert calibration_ratio(y, p) == pytest.approx(1.0, abs=0.02)
    assert calibration_ratio(y, 2 * p) == pytest.approx(2.0, abs=0.05)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="labels must be 0, 1 or NaN"):
        average_precision(np.array([0, 2.0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        average_precision(np.array([0, 1.0]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="equal length"):
        average_precision(np.array([0, 1.0]), np.array([0.1]))


def test_by_segment() -> None:
    y = np.array([1, 0, 1, 0.0])
    p = np.array([0.9, 0.1, 0.2, 0.8])
    masks = {"a": np.array([True, True, False, False]), "b": np.array([False, False, True, True])}
    out = by_segment(average_precision, y, p, masks)
    assert out == {"a": 1.0, "b": 0.5}
