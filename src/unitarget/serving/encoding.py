"""A scoring request encoded straight from its pydantic objects: the fast path of ``/v1/score``.

A request is one user and one context shared by N candidates. ``FeatureEncoder.transform`` on the
request as a table (``tables.request_table``) would repeat the user's fields on every row and pay
pyarrow's per-call overhead for each of ~20 features: about 2 ms of a 200-candidate request,
more than the model itself. ``RequestEncoder`` reads the same fitted state (vocabularies, bag
lengths, numeric statistics, vector widths, layout), looks each user and context value up once,
each candidate value with one dict lookup (``Vocabulary.lookup``), and hands the results to the
per-kind functions of ``data.encoders`` that ``FeatureEncoder`` uses too, so both write the same
``ids`` and ``dense`` arrays by construction. tests/test_request_encoding.py checks that on random
requests, unknown ids, missing fields, long and empty bags, hashed vocabularies and extra features.

Extra features (``FeaturesConfig.extra``) come in the ``features`` mapping of the user, the context
or a candidate, by their group; ``check_features`` rejects names and values the model cannot read
with a ``FeatureValueError`` naming the field, before anything is encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from unitarget.contract import Kind
from unitarget.data.encoders import TIME_FIELDS, pack_bags, pack_vectors, scale_counts, time_value
from unitarget.data.features import FeatureEncoder
from unitarget.data.vocabulary import OOV
from unitarget.serving.schemas import Candidate, Context, FeatureValue, User
from unitarget.serving.tables import CANDIDATE_FIELDS, CARRIER

class FeatureValueError(ValueError):
    """An extra feature the model does not have, or a value of the wrong kind or width."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class RequestEncoder:
    """(user, context, candidates, time) -> (ids (N, C) int32, dense (N, D) float32, OOV flags)."""

    def __init__(self, encoder: FeatureEncoder) -> None:
        self.layout = encoder.layout_
        self.vocabularies = dict(encoder.vocabularies_)
        for vocabulary in self.vocabularies.values():
            vocabulary.lookup([])  # builds its dict now, not on the first request
        self.numeric_stats = dict(encoder.numeric_stats_)
        self.vector_widths = dict(encoder.vector_widths_)
        #: carrier ("user", "context", "candidates") -> extra feature name -> kind
        self.extras: dict[str, dict[str, Kind]] = {carrier: {} for carrier in CARRIER.values()}
        for extra in encoder.features.extra:
            self.extras[CARRIER[extra.group]][extra.name] = extra.kind
        self.per_candidate = frozenset(CANDIDATE_FIELDS) | self.extras["candidates"].keys()

    def encode(self, user: User, context: Context, candidates: Sequence[Candidate],
               ts: datetime) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``ts`` is the request's time (UTC), from which hour and weekday are derived.

        OOV flags: field -> (N,) bool, True where a given value (not None) encoded to the OOV row
        (for a bag: any of its tokens); fields the request left out are not flagged. Raises
        ``FeatureValueError`` for extra features ``check_features`` rejects.
        """
        self.check_features(user, context, candidates)
        shared: dict[str, Any] = {**_fields(user), **_fields(context),
                                  **{name: time_value(name, ts) for name in TIME_FIELDS}}
        rows = [c.__dict__ if c.features is None else {**c.__dict__, **c.features} for c in candidates]
        ids, flags = self._ids(rows, shared)
        return ids, self._dense(rows, shared), flags

    def check_features(self, user: User, context: Context, candidates: Sequence[Candidate]) -> None:
        """Every extra feature sent is one of the model's, for the object that carries its group,
        with a value of its kind (a vector: of its width)."""
        items: list[tuple[list[str | int], dict[str, FeatureValue] | None, str]] = [
            (["body", "user"], user.features, "user"), (["body", "context"], context.features, "context")]
        items += [(["body", "candidates", i], c.features, "candidates")
                  for i, c in enumerate(candidates) if c.features is not None]
        for loc, features, carrier in items:
            for name, value in (features or {}).items():
                kinds = self.extras[carrier]
                if name not in kinds:
                    raise FeatureValueError([*loc, "features", name], f"unknown feature {name!r}; this model reads "
                                            f"{sorted(kinds) or 'no'} extra features here")
                problem = _kind_problem(kinds[name], value, self.vector_widths.get(name))
                if problem:
                    raise FeatureValueError([*loc, "features", name], f"feature {name!r} {problem}")

    def _ids(self, rows: list[dict[str, Any]], shared: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Categorical ids and bag tokens, and the OOV flags of each (see ``encode``)."""
        n, layout = len(rows), self.layout
        ids = np.zeros((n, layout.ids_width), dtype=np.int32)
        flags: dict[str, np.ndarray] = {}
        for j, name in enumerate(layout.categorical):
            values = self._values(name, rows, shared)
            local = self.vocabularies[name].lookup(values)
            ids[:, j] = local + layout.offsets[name]  # one shared value broadcasts over the rows
            given = np.array([v is not None for v in values])
            flags[name] = np.broadcast_to(given & (local == OOV), (n,))
        for name, start, stop in layout.bags:
            kept = [(bag or [])[:stop - start] for bag in self._values(name, rows, shared)]
            counts = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
            local = self.vocabularies[name].lookup([token for bag in kept for token in bag])
            block = pack_bags(counts, local, stop - start, layout.offsets[name])
            ids[:, start:stop] = block
            flags[name] = np.broadcast_to((block == layout.offsets[name] + OOV).any(axis=1), (n,))
        return ids, flags

    def _dense(self, rows: list[dict[str, Any]], shared: dict[str, Any]) -> np.ndarray:
        """Scaled counts and vectors; a missing value reads as 0 (a missing vector as zeros)."""
        dense = np.zeros((len(rows), self.layout.dense_dim), dtype=np.float32)
        col = 0
        for name, width in self.layout.dense:
            values = self._values(name, rows, shared)
            if name in self.numeric_stats:
                raw = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
                dense[:, col] = scale_counts(raw, *self.numeric_stats[name])
            elif any(v is not None for v in values):  # else zeros, as for a vector column left out
                flat = np.array([x for v in values if v is not None for x in v], dtype=np.float64)
                dense[:, col:col + width] = pack_vectors(flat, np.array([v is not None for v in values]), width)
            col += width
        return dense

    def _values(self, name: str, rows: list[dict[str, Any]], shared: dict[str, Any]) -> list[Any]:
        """A candidate field's value per candidate, or a user or context field's one value."""
        return [row.get(name) for row in rows] if name in self.per_candidate else [shared.get(name)]


def _fields(item: User | Context) -> dict[str, Any]:
    """The item's standard fields and its extra features, by name (``ts`` is read separately)."""
    standard = {name: value for name, value in item.__dict__.items() if name not in ("ts", "features")}
    return standard | (item.features or {})


def _kind_problem(kind: Kind, value: FeatureValue, width: int | None) -> str | None:
    """What is wrong with ``value`` for a feature of ``kind`` (None: nothing)."""
    if kind is Kind.CATEGORICAL:
        return None if isinstance(value, str) else "is categorical: give a string id"
    if kind is Kind.BAG:
        return None if isinstance(value, list) and all(isinstance(v, str) for v in value) else \
            "is a bag: give a list of string ids"
    if kind is Kind.NUMERIC:
        return None if isinstance(value, (int, float)) else "is numeric: give a number"
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) for v in value):
        return "is a vector: give a list of numbers"
    if width is not None and len(value) != width:
        return f"is a vector of {width} numbers, not {len(value)}"
    return None
