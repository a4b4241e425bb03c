"""Id -> row maps for embedding tables, fitted on training data (scikit-learn's estimator contract).

Row 0 of every vocabulary is the out-of-vocabulary bucket: ids unseen in training, ids rarer than
``min_count`` and nulls all land there, so scoring never fails on an unknown id. Each vocabulary
maps values two ways under that one rule: ``transform`` takes an Arrow column (a log; vectorised
with ``pyarrow.compute``, no per-row Python) and ``lookup`` a short Python sequence (one scoring
request; a dict lookup per value, since pyarrow's per-call overhead dominates on a few values).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OOV = 0


def as_string(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary and large string columns become plain strings so one code path handles all."""
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    return values


class Vocabulary:
    """Ids seen at least ``min_count`` times, in sorted order, after the OOV row."""

    def __init__(self, min_count: int = 1) -> None:
        self.min_count = min_count

    def fit(self, values: pa.Array | pa.ChunkedArray) -> "Vocabulary":
        """Learn the ids seen at least ``min_count`` times (nulls ignored), sorted so the vocabulary does not depend on
        row order."""
        counts = pc.value_counts(as_string(values).drop_null())
        return self.fit_counts(counts.field("values"), counts.field("counts"))

    def fit_counts(self, ids: pa.Array, counts: pa.Array) -> "Vocabulary":
        """Learn from distinct ids and how often each occurred (e.g. summed over a log's chunks): the ids counted at
        least ``min_count`` times, sorted. ``fit`` counts its column and comes here, so both apply one rule."""
        kept = pc.filter(ids, pc.greater_equal(counts, self.min_count))
        self.values_ = pc.take(kept, pc.sort_indices(kept))  # sorted: same vocabulary for any row order
        self.__dict__.pop("_rows", None)  # refitted: ``lookup`` rebuilds its dict
        return self

    @cached_property
    def _rows(self) -> dict[str, int]:
        """value -> row, built on the first ``lookup`` (training never pays for it)."""
        return {value: row + 1 for row, value in enumerate(self.values_.to_pylist())}

    @property
    def size(self) -> int:
        """Rows needed in an embedding table, OOV included."""
        return len(self.values_) + 1

    def transform(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """(N,) int64 rows of an Arrow column in one vectorised ``index_in``: 1 + the id's sorted position, 0 (OOV) for
        unseen, rare and null ids."""
        index = pc.index_in(as_string(values), value_set=self.values_)
        return (pc.fill_null(index, -1).to_numpy().astype(np.int64) + 1).reshape(-1)

    def lookup(self, values: Sequence[str | None]) -> np.ndarray:
        """(len(values),) int64 rows of Python strings, as ``transform`` maps them (None -> OOV)."""
        return np.fromiter(map(self._rows.get, values, repeat(OOV)), dtype=np.int64, count=len(values))

    def to_dict(self) -> dict[str, Any]:
        """``min_count`` and the kept ids as JSON (``type: vocabulary``), for ``vocabulary_from_dict``."""
        return {"type": "vocabulary", "min_count": self.min_count, "values": self.values_.to_pylist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocabulary":
        """A fitted vocabulary from ``to_dict``'s JSON (no code executed)."""
        vocab = cls(min_count=data["min_count"])
        vocab.values_ = pa.array(data["values"], type=pa.string())
        return vocab


class HashedVocabulary:
    """Ids hashed into a fixed number of buckets, for id spaces too large to enumerate.

    The hash is BLAKE2b of the UTF-8 id, so buckets are stable across processes and machines
    (Python's ``hash`` is salted per process). Only distinct ids are hashed in Python; rows reuse
    them through a dictionary encoding. Nulls go to the OOV row.
    """

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    def fit(self, values: pa.Array | pa.ChunkedArray) -> "HashedVocabulary":
        """Nothing to learn: the buckets are fixed by the hash, so any id maps without a fitted list."""
        return self

    @property
    def size(self) -> int:
        """Rows needed in an embedding table: the buckets plus the OOV row."""
        return self.buckets + 1

    def transform(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """(N,) int64 rows of an Arrow column: 1 + BLAKE2b(id) mod ``buckets``, each distinct id hashed once through a
        dictionary encoding; nulls -> 0 (OOV)."""
        # large_string so that combining chunks never overflows 32-bit offsets on huge logs.
        encoded = pc.dictionary_encode(as_string(values).cast(pa.large_string()).combine_chunks())
        distinct = encoded.dictionary.to_pylist()
        bucket_of = np.fromiter(map(self._row, distinct), dtype=np.int64, count=len(distinct))
        indices = encoded.indices
        out = np.full(len(indices), OOV, dtype=np.int64)
        valid = indices.is_valid().to_numpy(zero_copy_only=False)
        out[valid] = bucket_of[indices.to_numpy(zero_copy_only=False)[valid].astype(np.int64)]
        return out

    def lookup(self, values: Sequence[str | None]) -> np.ndarray:
        """(len(values),) int64 rows of Python strings, as ``transform`` maps them (None -> OOV);
        each distinct value is hashed once."""
        rows = {v: self._row(v) for v in set(values) if v is not None}
        return np.fromiter(map(rows.get, values, repeat(OOV)), dtype=np.int64, count=len(values))

    def _row(self, value: str) -> int:
        """The row of a (non-null) id: 1 + its stable hash modulo the number of buckets."""
        return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little") % self.buckets + 1

    def to_dict(self) -> dict[str, Any]:
        """The bucket count as JSON (``type: hashed``); nothing else is needed to hash the same way."""
        return {"type": "hashed", "buckets": self.buckets}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HashedVocabulary":
        """A hashed vocabulary from ``to_dict``'s JSON."""
        return cls(buckets=data["buckets"])


def vocabulary_from_dict(data: dict[str, Any]) -> Vocabulary | HashedVocabulary:
    """Either vocabulary from its JSON, dispatched on ``type`` through one literal mapping (no class is looked up by
    name)."""
    kinds = {"vocabulary": Vocabulary, "hashed": HashedVocabulary}
    return kinds[data["type"]].from_dict(data)
