"""Accumulators that let ``FeatureEncoder.fit_chunks`` learn from a log one chunk at a time.

Each holds what one feature kind needs to see of every row, in memory bounded by what is learned
(distinct ids, a few numbers), not by the rows: ``IdCounts`` for a vocabulary, whose ``min_count``
can only be applied once every chunk is counted; ``Moments`` for the mean and std of a numeric
feature. Bag lengths and vector widths are plain maxima and the tier map sums its own streams
(``TierMap.partial_fit``), so they need no class here.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget.data.vocabulary import Vocabulary, as_string


class IdCounts:
    """How often each id occurred in every column given so far (nulls ignored): a vocabulary's counts merged across
    chunks, so an id rarer than ``min_count`` in each chunk but not in the log is kept."""

    def __init__(self) -> None:
        self.ids_ = pa.array([], pa.string())
        self.counts_ = pa.array([], pa.int64())

    def update(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Add the occurrences of the ids in ``values``: counted within the chunk, then summed with the counts so far
        (memory: the distinct ids, not the rows)."""
        counts = pc.value_counts(as_string(values).drop_null())
        merged = (
            pa.table({
                "id": pa.chunked_array([self.ids_, counts.field("values")], pa.string()),
                "count": pa.chunked_array([self.counts_, counts.field("counts")], pa.int64()),
            })
            .group_by("id", use_threads=False)
            .aggregate([("count", "sum")])
        )
        self.ids_ = merged.column("id").combine_chunks()
        self.counts_ = merged.column("count_sum").combine_chunks()

    def vocabulary(self, min_count: int) -> Vocabulary:
        """The vocabulary of the ids counted at least ``min_count`` times, as ``Vocabulary.fit`` on all the values."""
        return Vocabulary(min_count).fit_counts(self.ids_, self.counts_)


class Moments:
    """Count, mean and sum of squared deviations (M2) of the non-NaN values seen so far, merged chunk by chunk with
    Chan, Golub and LeVeque's pairwise update: numerically stable, where summing x and x² would cancel badly."""

    def __init__(self) -> None:
        self.count_ = 0
        self.mean_ = 0.0
        self.m2_ = 0.0

    def update(self, values: np.ndarray) -> None:
        """Merge in the moments of ``values`` (NaN ignored, as ``np.nanmean``/``np.nanstd`` ignore it)."""
        valid = ~np.isnan(values)
        count = int(valid.sum())
        if count == 0:  # nothing to merge (an all-null chunk would make a 0/0 mean)
            return
        # The chunk's moments are computed as np.nanmean/np.nanvar compute them (NaN -> 0, then NumPy's pairwise sums),
        # and merging into no values returns them unchanged, so one chunk gives NumPy's results bit for bit.
        zeroed = np.where(valid, values, 0.0)
        mean = float(np.sum(zeroed) / count)
        deviations = np.where(valid, zeroed - mean, 0.0)
        m2 = float(np.sum(deviations * deviations))
        total = self.count_ + count
        delta = mean - self.mean_
        self.mean_ += delta * (count / total)
        self.m2_ += m2 + delta * delta * (self.count_ * count / total)
        self.count_ = total

    def mean_std(self) -> tuple[float, float]:
        """Mean and population std (ddof 0) of the values seen; both NaN when there were none, as NumPy's are."""
        if self.count_ == 0:
            return math.nan, math.nan
        return self.mean_, math.sqrt(self.m2_ / self.count_)
