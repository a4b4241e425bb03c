"""A scoring request encoded straight from its pydantic objects: the fast path of ``/v1/score``.

A request is one user and one context shared by N candidates. ``FeatureEncoder.transform`` on the
request as a table (``tables.request_table``) would repeat the user's fields on every row and pay
pyarrow's per-call overhead for each of ~20 features: about 2 ms of a 200-candidate request,
more than the model itself. ``RequestEncoder`` reads the same fitted state (vocabularies, bag
lengths, numeric statistics, layout) and looks each user and context value up once, each
candidate value with one dict lookup, and writes the same ``ids`` and ``dense`` arrays. It must
agree with ``FeatureEncoder.transform`` exactly: tests/test_request_encoding.py checks that on
random requests, unknown ids, missing fields, long and empty bags and hashed vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from unitarget import contract
from unitarget.data.features import PADDING_ROW, FeatureEncoder
from unitarget.data.vocabulary import OOV, HashedVocabulary, Vocabulary
from unitarget.serving.schemas import Candidate, Context, User
from unitarget.serving.tables import CANDIDATE_FIELDS

Lookup = Callable[[Sequence[str | None]], np.ndarray]


def _lookup(vocabulary: Vocabulary | HashedVocabulary) -> Lookup:
    """values -> (len,) int64 rows local to the feature's block (OOV for unknown and None)."""
    if isinstance(vocabulary, HashedVocabulary):
        return lambda values: vocabulary.transform(pa.array(list(values), type=pa.string()))
    rows = {value: row + 1 for row, value in enumerate(vocabulary.values_.to_pylist())}
    get = rows.get
    return lambda values: np.fromiter((get(v, OOV) for v in values), dtype=np.int64, count=len(values))


class RequestEncoder:
    """(user, context, candidates, time) -> (ids (N, C) int32, dense (N, D) float32, OOV flags)."""

    def __init__(self, encoder: FeatureEncoder) -> None:
        self.layout = encoder.layout_
        self.lookups = {name: _lookup(v) for name, v in encoder.vocabularies_.items()}
        self.numeric_stats = dict(encoder.numeric_stats_)
        layout = self.layout
        self.width = layout.bags[-1][2] if layout.bags else layout.n_categorical
        self.per_candidate = frozenset(CANDIDATE_FIELDS)

    def encode(self, user: User, context: Context, candidates: Sequence[Candidate],
               ts: datetime) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``ts`` is the request's time (UTC), from which hour and weekday are derived.

        OOV flags: field -> (N,) bool, True where a given value (not None) encoded to the OOV row
        (for a bag: any of its tokens); fields the request left out are not flagged.
        """
        n, layout = len(candidates), self.layout
        shared: dict[str, Any] = {**_fields(user), **_fields(context),
                                  contract.HOUR: str(ts.hour), contract.WEEKDAY: str(ts.weekday())}
        rows = [c.__dict__ for c in candidates]
        ids = np.zeros((n, self.width), dtype=np.int32)
        flags: dict[str, np.ndarray] = {}
        for j, name in enumerate(layout.categorical):
            values = self._values(name, rows, shared)
            local = self.lookups[name](values)
            ids[:, j] = local + layout.offsets[name]  # one shared value broadcasts over the rows
            given = np.array([v is not None for v in values])
            flags[name] = np.broadcast_to(given & (local == OOV), (n,))
        for name, start, stop in layout.bags:
            block, unknown = self._bags(name, self._values(name, rows, shared), stop - start)
            ids[:, start:stop] = block
            flags[name] = np.broadcast_to(unknown, (n,))
        dense = np.zeros((n, layout.dense_dim), dtype=np.float32)
        col = 0
        for name, width in layout.dense:
            if name in self.numeric_stats:  # vectors cannot be sent in a request: zeros, as if absent
                dense[:, col] = self._numeric(name, self._values(name, rows, shared))
            col += width
        return ids, dense, flags

    def _values(self, name: str, rows: list[dict[str, Any]], shared: dict[str, Any]) -> list[Any]:
        """A candidate field's value per candidate, or a user or context field's one value."""
        return [row.get(name) for row in rows] if name in self.per_candidate else [shared.get(name)]

    def _bags(self, name: str, bags: list[list[str] | None], length: int) -> tuple[np.ndarray, np.ndarray]:
        """(len(bags), length) table rows of the first ``length`` tokens (0 pads), and whether any
        token was unknown."""
        kept = [(bag or [])[:length] for bag in bags]
        counts = np.fromiter((len(bag) for bag in kept), dtype=np.int64, count=len(kept))
        local = self.lookups[name]([token for bag in kept for token in bag])
        row = np.repeat(np.arange(len(kept)), counts)
        column = np.arange(len(local)) - np.repeat(np.cumsum(counts) - counts, counts)
        block = np.full((len(kept), length), PADDING_ROW, dtype=np.int32)
        block[row, column] = local + self.layout.offsets[name]
        unknown = np.bincount(row[local == OOV], minlength=len(kept)) > 0
        return block, unknown

    def _numeric(self, name: str, values: list[int | None]) -> np.ndarray:
        """(log1p(max(x, 0)) − mean) / std, 0 for a missing value: ``FeatureEncoder``'s scaling."""
        mean, std = self.numeric_stats[name]
        raw = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        return np.nan_to_num((np.log1p(np.clip(raw, 0.0, None)) - mean) / std, nan=0.0)


def _fields(item: User | Context) -> dict[str, Any]:
    return {name: value for name, value in item.__dict__.items() if name != "ts"}

