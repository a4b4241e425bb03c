"""Score model predictions per target and popularity segment.

An :class:`EvalTarget` says which task's prediction is scored against which label on which
impressions: the paper's *Promotions AP* is ``promo_stream`` scored on the ``stream`` label of
promotion impressions, its *Ads AP* ``ad_stream`` on ad impressions (docs/data-contract.md). A
single-head baseline is scored on both channels by pointing both targets at its one task.

Work per target: one mask for the observed rows of its source, one descending sort of the
predictions (and one of the true probabilities, for the oracle AP), one gather of the tiers into
that order and one (segments, rows) mask matrix built from them; each segment is then a boolean
slice of the sorted arrays (a subset of a sorted sequence stays sorted). No per-row Python.
Gathering the int8 tier column and recomputing the masks is ~4x cheaper than gathering an
(11, n) boolean mask matrix built up front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unitarget.evaluation.metrics import (
    average_precision_sorted,
    calibration_observed,
    log_loss_observed,
    observed,
    roc_auc_sorted,
)
from unitarget.evaluation.result import EvaluationResult, MetricRow
from unitarget.evaluation.segments import ALL, SEGMENTS, check_tier, segment_masks

PROMOTIONS_STREAM = "promotions_stream"
ADS_STREAM = "ads_stream"


@dataclass(frozen=True)
class EvalTarget:
    """Which predictions are scored against which label on which impressions (``evaluation.heads``
    builds them: which head serves what, and which rows count for a head)."""

    name: str  # row key in reports, e.g. "promotions_stream"
    task: str  # model task whose prediction is used, e.g. "promo_stream"
    label: str  # label column, e.g. "stream"
    source: str | tuple[str, ...] | None  # only impressions of this source (or these); None = all
    formats: tuple[str, ...] | None = None  # only ad impressions of these formats; None = any row


def evaluate_segments(
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    source: np.ndarray | None,
    tier: np.ndarray | None,
    targets: Sequence[EvalTarget],
    true_probabilities: Mapping[str, np.ndarray] | None = None,
    *,
    formats: np.ndarray | None = None,
    segments: Sequence[str] = SEGMENTS,
    informed_probabilities: Mapping[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """Score every target on every segment.

    Args:
        predictions: task -> predicted probability, (n,).
        labels: label -> float array, 1/0 or NaN where not observed, (n,).
        source: (n,) source of each impression ("ads", "promotions", ...); may be None when no
            target selects a source.
        tier: (n,) popularity tier 0..7 (``contract.tier_of``); may be None when ``segments`` is
            just ``("all",)``.
        targets: what to score.
        true_probabilities: label -> the probability each label was drawn from (synthetic data),
            (n,), NaN where the label is null. Gives ``oracle_ap``: the AP of the Bayes-optimal
            ranking, the ceiling a model can reach on those rows. Labels missing here get NaN.
        formats: (n,) ad format of each impression (None for none); needed by targets with formats.
        segments: which of ``SEGMENTS`` to score, in that order (validation needs only "all").
        informed_probabilities: label -> (n,) the informed oracle's probability (``evaluation.informed``:
            what the impressions logged before these rows allow). Gives ``informed_oracle_ap``.

    Returns:
        len(targets) * len(segments) rows, target-major, segments in ``SEGMENTS`` order.
    """
    chosen = [s for s in SEGMENTS if s in segments]
    if tier is None:
        if chosen != [ALL]:
            raise ValueError(f"segments {chosen} need the tier of each row")
        tier = np.zeros(len(next(iter(labels.values()), ())), dtype=np.int8)  # every row in "all"
    tier = check_tier(tier)
    if source is not None and np.shape(source) != tier.shape:
        raise ValueError(f"source has shape {np.shape(source)}, expected {tier.shape}")
    rows: list[MetricRow] = []
    for target in targets:
        keep = _target_rows(target, labels, source, formats, tier.size)
        oracles = {"oracle_ap": true_probabilities, "informed_oracle_ap": informed_probabilities}
        rows.extend(_evaluate_target(target, keep, predictions, labels, tier, oracles, chosen))
    return EvaluationResult(tuple(rows))


def _target_rows(target: EvalTarget, labels: Mapping[str, np.ndarray], source: np.ndarray | None,
                 formats: np.ndarray | None, n: int) -> np.ndarray:
    """(n,) rows the target is scored on: its label observed, its source(s), its formats."""
    keep = ~np.isnan(_column(labels, target.label, "label", n))
    if target.source is not None:
        if source is None:
            raise ValueError(f"target {target.name!r} is scored on one source: pass the sources of the rows")
        keep &= np.isin(source, [target.source] if isinstance(target.source, str) else list(target.source))
    if target.formats is not None:
        if formats is None:
            raise ValueError(f"target {target.name!r} is scored per format: pass the formats of the rows")
        keep &= np.isin(np.asarray(formats, dtype=object), list(target.formats))
    return keep


def _column(arrays: Mapping[str, np.ndarray], key: str, what: str, n: int) -> np.ndarray:
    if key not in arrays:
        raise KeyError(f"no {what} {key!r}; available: {sorted(arrays)}")
    array = np.asarray(arrays[key], dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"{what} {key!r} has shape {array.shape}, expected ({n},)")
    return array


def _evaluate_target(
    target: EvalTarget,
    keep: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    tier: np.ndarray,
    oracles: Mapping[str, Mapping[str, np.ndarray] | None],
    segments: Sequence[str],
) -> list[MetricRow]:
    n = tier.size
    y = _column(labels, target.label, "label", n)
    p = _column(predictions, target.task, "prediction for task", n)
    y, p = observed(y[keep], p[keep])  # (m,)
    tier = tier[keep]  # (m,)
    wanted = [SEGMENTS.index(s) for s in segments]

    order = np.argsort(-p)  # tie order is irrelevant: tied scores form one threshold
    y_desc, p_desc, seg_desc = y[order], p[order], segment_masks(tier[order])[wanted]  # seg_desc: (S, m)
    oracle_aps = {field: _oracle_aps(target, keep, y, tier, wanted, probabilities)
                  for field, probabilities in oracles.items()}

    rows = []
    for s, segment in enumerate(segments):
        ys, ps = y_desc[seg_desc[s]], p_desc[seg_desc[s]]
        rows.append(
            MetricRow(
                target=target.name,
                task=target.task,
                label=target.label,
                source=target.source,
                segment=segment,
                n=int(ys.size),
                n_pos=int(ys.sum()),
                ap=average_precision_sorted(ys, ps),
                roc_auc=roc_auc_sorted(ys, ps),
                log_loss=log_loss_observed(ys, ps),
                calibration=calibration_observed(ys, ps),
                **{field: aps[s] for field, aps in oracle_aps.items()},
            )
        )
    return rows


def _oracle_aps(target: EvalTarget, keep: np.ndarray, y: np.ndarray, tier: np.ndarray, wanted: list[int],
                probabilities: Mapping[str, np.ndarray] | None) -> list[float]:
    """AP of an oracle's probabilities of ``target.label`` on each wanted segment of the kept rows
    (``y`` and ``tier`` already kept); NaN everywhere when the oracle has no such label."""
    if probabilities is None or target.label not in probabilities:
        return [float("nan")] * len(wanted)
    q = _column(probabilities, target.label, "oracle probability for label", keep.size)[keep]
    if not np.isfinite(q).all():
        raise ValueError(f"oracle probability for label {target.label!r} is NaN on observed rows")
    order = np.argsort(-q)
    yq, qq, segq = y[order], q[order], segment_masks(tier[order])[wanted]
    return [average_precision_sorted(yq[segq[s]], qq[segq[s]]) for s in range(len(wanted))]
