"""Per-kind feature encoding, defined once for both paths that encode features.

``FeatureEncoder.transform`` encodes a whole log from Arrow columns; ``serving.encoding.RequestEncoder``
encodes one scoring request from Python values without building a table (it is the service's fast
path). Each reads its values its own way, then hands them to the functions here, so what a feature
kind *means* is written once and the two paths cannot drift apart:

- categorical: the vocabulary's lookup (``Vocabulary.transform`` for Arrow, ``.lookup`` for Python
  values; both hold the OOV rule) plus the feature's block offset;
- bag: ``pack_bags`` places (counts, local rows) into an (N, length) block padded with row 0;
- numeric: ``scale_counts`` is (log1p(max(x, 0)) − mean) / std, NaN (missing) -> 0;
- vector: ``pack_vectors`` places the given vectors, zeros for a missing one;
- time: ``TIME_FIELDS`` defines hour and weekday of a timestamp once, as the pair of functions
  that compute it on an Arrow column and on a ``datetime`` (tests check they agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract

#: Row 0 of the fused embedding table: the padding of short bags (its embedding stays zero).
PADDING_ROW: Final = 0


@dataclass(frozen=True)
class TimeField:
    """A context feature derived from the impression's time (UTC): one field, two evaluators."""

    arrow: Callable[[pa.ChunkedArray], pa.ChunkedArray]
    python: Callable[[datetime], int]


#: Hour of day 0..23 and weekday 0..6 from Monday (``pc.day_of_week``'s default is ``weekday()``'s).
TIME_FIELDS: Final = {
    contract.HOUR: TimeField(pc.hour, lambda ts: ts.hour),
    contract.WEEKDAY: TimeField(pc.day_of_week, datetime.weekday),
}


def time_column(name: str, ts: pa.ChunkedArray) -> pa.ChunkedArray:
    """The time feature ``name`` of every row, as string ids (what its vocabulary holds)."""
    return TIME_FIELDS[name].arrow(ts).cast(pa.string())


def time_value(name: str, ts: datetime) -> str:
    """The time feature ``name`` of one time, as the string id ``time_column`` gives it."""
    return str(TIME_FIELDS[name].python(ts))


def log1p_counts(raw: np.ndarray) -> np.ndarray:
    """log1p of counts clipped at 0 (a negative count is read as none); NaN stays NaN."""
    return np.log1p(np.clip(raw, 0.0, None))


def scale_counts(raw: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N,) float64 standardised log counts of ``raw`` (float64, NaN where missing); missing -> 0,
    the training mean, so an absent count pushes the model neither way."""
    return np.nan_to_num((log1p_counts(raw) - mean) / std, nan=0.0)


def pack_bags(counts: np.ndarray, local: np.ndarray, length: int, offset: int) -> np.ndarray:
    """(N, length) int32 table rows: row i holds its ``counts[i]`` (<= length) tokens of ``local``
    (rows local to the feature's vocabulary, all rows' tokens concatenated) plus ``offset``, then
    padding. One scatter, no per-row Python."""
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    block = np.full((len(counts), length), PADDING_ROW, dtype=np.int32)
    block[rows, np.arange(len(local)) - starts] = local + offset
    return block


def pack_vectors(flat: np.ndarray, present: np.ndarray, width: int) -> np.ndarray:
    """(N, width) float32 rows: the present rows' vectors (``flat``, concatenated in row order) in
    order, zeros where ``present`` is False (a missing vector reads like a missing column)."""
    block = np.zeros((len(present), width), dtype=np.float32)
    block[present] = np.asarray(flat, dtype=np.float32).reshape(-1, width)
    return block
