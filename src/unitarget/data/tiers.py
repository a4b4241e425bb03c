"""Popularity tier of each impression's show, per the contract.

Tiers come from ``show_streams_30d`` when a log carries it. Otherwise the contract says to count
the training data's own streams per show; that count is fitted here (chunk by chunk, ``partial_fit``) and
saved with the model, and ``TierMap.source_`` tells the report which rule was used.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.data.vocabulary import as_string

TierSource = Literal["show_streams_30d", "training_stream_counts"]


class TierMap:
    """Show -> popularity tier: from ``show_streams_30d`` when the log has it, else from stream counts per show fitted
    on the training log (``source_`` records which)."""

    def partial_fit(self, table: pa.Table) -> "TierMap":
        """Add ``table``'s stream label per show (nulls as 0) to the sums so far, the fallback used when a log has no
        ``show_streams_30d``, so a log larger than memory is fitted chunk by chunk. The first call records which rule
        applies, from its schema (a log's chunks share one). Memory grows with the shows, not the rows. Shows are kept
        sorted (group-by output order depends on batch boundaries), so chunking changes neither sums nor order."""
        if not hasattr(self, "source_"):
            self.source_: TierSource = (
                "show_streams_30d" if contract.SHOW_STREAMS_30D in table.column_names else "training_stream_counts"
            )
            self.shows_ = pa.array([], pa.string())
            self.stream_counts_ = np.zeros(0, dtype=np.int64)
        streams = pc.fill_null(table.column(contract.REQUIRED_LABEL).cast(pa.int64()), 0)
        shows = as_string(table.column(contract.SHOW_ID))
        per_show = (
            pa.table({
                "show": pa.chunked_array([self.shows_, *shows.chunks], pa.string()),
                "streams": pa.chunked_array([pa.array(self.stream_counts_), *streams.chunks], pa.int64()),
            })
            .group_by("show")
            .aggregate([("streams", "sum")])
            .sort_by("show")
        )
        self.shows_ = per_show.column("show").combine_chunks()
        self.stream_counts_ = per_show.column("streams_sum").to_numpy().astype(np.int64)
        return self

    def tiers(self, table: pa.Table) -> np.ndarray:
        """(N,) tier 0..7; shows unseen in training count as 0 streams (tier 7)."""
        if contract.SHOW_STREAMS_30D in table.column_names:
            counts = pc.fill_null(table.column(contract.SHOW_STREAMS_30D).cast(pa.int64()), 0).to_numpy()
        else:
            index = pc.index_in(as_string(table.column(contract.SHOW_ID)), value_set=self.shows_)
            index = pc.fill_null(index, -1).to_numpy()
            counts = np.where(index >= 0, self.stream_counts_[np.maximum(index, 0)], 0)
        return contract.tier_of(counts)

    def to_dict(self) -> dict[str, Any]:
        """The rule and the per-show stream counts as JSON lists, for saving beside the model."""
        return {
            "source": self.source_,
            "shows": self.shows_.to_pylist(),
            "stream_counts": self.stream_counts_.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TierMap":
        """A fitted tier map from ``to_dict``'s JSON (no code executed)."""
        tier_map = cls()
        tier_map.source_ = data["source"]
        tier_map.shows_ = pa.array(data["shows"], type=pa.string())
        tier_map.stream_counts_ = np.asarray(data["stream_counts"], dtype=np.int64)
        return tier_map
