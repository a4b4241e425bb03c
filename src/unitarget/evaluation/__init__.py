"""Offline evaluation: pure metrics, popularity segments, and per-segment scoring of targets."""

from unitarget.evaluation.evaluate import (
    ADS_STREAM,
    PROMOTIONS_STREAM,
    EvalTarget,
    evaluate_segments,
)
from unitarget.evaluation.metrics import (
    average_precision,
    by_segment,
    calibration_ratio,
    log_loss,
    roc_auc,
)
from unitarget.evaluation.result import EvaluationResult, MetricRow
from unitarget.evaluation.segments import (
    HIGH_STREAM,
    LESS_STREAMED,
    SEGMENTS,
    TIER_SEGMENTS,
    segment_label,
    segment_masks,
    tier_short_label,
)

__all__ = [
    "ADS_STREAM",
    "HIGH_STREAM",
    "LESS_STREAMED",
    "PROMOTIONS_STREAM",
    "SEGMENTS",
    "TIER_SEGMENTS",
    "EvalTarget",
    "EvaluationResult",
    "MetricRow",
    "average_precision",
    "by_segment",
    "calibration_ratio",
    "evaluate_segments",
    "log_loss",
    "roc_auc",
    "segment_label",
    "segment_masks",
    "tier_short_label",
]
