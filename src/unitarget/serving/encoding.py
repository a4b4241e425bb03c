"""Scoring requests encoded straight from their pydantic objects: the fast path of ``/v1/score``.

A request is one user and one context shared by N candidates. ``FeatureEncoder.transform`` on the
request as a table (``tables.request_table``) would repeat the user's fields on every row and pay
pyarrow's per-call overhead for each of ~20 features: about 2 ms of a 200-candidate request,
more than the model itself. ``RequestEncoder`` reads the same fitted state (vocabularies, bag
lengths, numeric statistics, vector widths, layout), looks each user and context value up once
per request, each candidate value with one dict lookup (``Vocabulary.lookup``), and hands the
results to the per-kind functions of ``data.encoders`` that ``FeatureEncoder`` uses too, so both
write the same ``ids`` and ``dense`` arrays by construction. tests/test_request_encoding.py checks
that on random requests, unknown ids, missing fields, long and empty bags, hashed vocabularies and
extra features.

``encode_many`` encodes a batch of requests (``Part``: user, context, candidates, time) in one
pass: per feature one look-up over every candidate of the batch (or every request's one user or
context value, repeated over its rows), so the per-feature array operations, about 0.2 ms per
call, are paid once per batch rather than per request. Every value is still encoded on its own,
so each request's rows are the ones it gets alone (tested).

Extra features (``FeaturesConfig.extra``) come in the ``features`` mapping of the user, the context
or a candidate, by their group; ``check_features`` rejects names and values the model cannot read
with a ``FeatureValueError`` naming the field, before anything is encoded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain, repeat
from operator import is_not, itemgetter
from typing import Any, NamedTuple

import numpy as np

from unitarget.contract import Kind
from unitarget.data.encoders import TIME_FIELDS, pack_bags, pack_vectors, scale_counts, time_value
from unitarget.data.features import FeatureEncoder
from unitarget.data.vocabulary import OOV
from unitarget.serving.schemas import Candidate, Context, FeatureValue, User
from unitarget.serving.tables import CANDIDATE_FIELDS, CARRIER


_CANDIDATE_FIELDS = frozenset(CANDIDATE_FIELDS)


class FeatureValueError(ValueError):
    """An extra feature the model does not have, or a value of the wrong kind or width."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Part(NamedTuple):
    """One request as the encoder reads it: its user, context and candidates, and its time (UTC), from which hour
    and weekday are derived. The time is fixed when the request arrives, so it encodes the same in any batch."""

    user: User
    context: Context
    candidates: Sequence[Candidate]
    ts: datetime

    @classmethod
    def of(cls, user: User, context: Context, candidates: Sequence[Candidate], now: datetime | None = None) -> "Part":
        """The request at the context's time, else ``now``, else the clock's (UTC)."""
        return cls(user, context, candidates, context.ts or now or datetime.now(timezone.utc))


@dataclass(frozen=True)
class Encoded:
    """The rows of one or more requests, in order: ids (N, C) int32, dense (N, D) float32, OOV flags (field -> (N,)
    bool), and where each request's rows start and stop (``bounds``, R + 1 offsets)."""

    ids: np.ndarray
    dense: np.ndarray
    flags: dict[str, np.ndarray]
    bounds: tuple[int, ...]

    def flags_of(self, r: int) -> dict[str, np.ndarray]:
        """Request ``r``'s OOV flags, each its own rows (views)."""
        start, stop = self.bounds[r], self.bounds[r + 1]
        return {name: flags[start:stop] for name, flags in self.flags.items()}


class RequestEncoder:
    """Requests -> ``Encoded``: ids (N, C) int32, dense (N, D) float32, OOV flags."""

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

    def encode(self, user: User, context: Context, candidates: Sequence[Candidate],
               ts: datetime) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(ids, dense, OOV flags) of one request at time ``ts`` (UTC); ``FeatureValueError`` for extra features
        ``check_features`` rejects.

        OOV flags: field -> (N,) bool, True where a given value (not None) encoded to the OOV row
        (for a bag: any of its tokens); fields the request left out are not flagged.
        """
        self.check_features(user, context, candidates)
        encoded = self.encode_many([Part(user, context, candidates, ts)])
        return encoded.ids, encoded.dense, encoded.flags

    def encode_many(self, parts: Sequence[Part]) -> Encoded:
        """Several requests' rows at once, each request's rows exactly what it gets alone (every value is encoded
        on its own; a user or context value is looked up once per request and repeated over its rows). Each part
        must have passed ``check_features``. One call per feature for the whole batch, not per request."""
        rows = _Rows(parts, self.extras["candidates"])
        n, layout = rows.n, self.layout
        ids = np.zeros((n, layout.ids_width), dtype=np.int32)
        dense = np.zeros((n, layout.dense_dim), dtype=np.float32)
        flags: dict[str, np.ndarray] = {}
        for j, name in enumerate(layout.categorical):
            values = rows.values(name)
            local = self.vocabularies[name].lookup(values)
            oov = local == OOV
            if oov.any():  # a value left out (None) is not unknown
                oov &= np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=len(values))
            ids[:, j] = rows.expand(name, local) + layout.offsets[name]
            flags[name] = rows.expand(name, oov)
        for name, start, stop in layout.bags:
            kept = [bag[:stop - start] if bag else () for bag in rows.values(name)]
            counts = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
            local = self.vocabularies[name].lookup(list(chain.from_iterable(kept)))
            block = pack_bags(counts, local, stop - start, layout.offsets[name])
            ids[:, start:stop] = rows.expand(name, block)
            flags[name] = rows.expand(name, (block == layout.offsets[name] + OOV).any(axis=1))
        col = 0
        for name, width in layout.dense:
            self._dense(name, width, rows, dense[:, col:col + width])
            col += width
        return Encoded(ids, dense, flags, rows.bounds)

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

    def _dense(self, name: str, width: int, rows: "_Rows", out: np.ndarray) -> None:
        """Write a count (scaled) or a vector into ``out`` (N, width); a missing value reads as 0 (a missing vector
        as zeros, which ``out`` already holds)."""
        values = rows.values(name)
        if name in self.numeric_stats:
            raw = np.array(values, dtype=np.float64)  # None -> NaN: missing
            out[:, 0] = rows.expand(name, scale_counts(raw, *self.numeric_stats[name]))
        elif any(v is not None for v in values):
            present = np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=len(values))
            flat = np.array(list(chain.from_iterable(v for v in values if v is not None)), dtype=np.float64)
            out[:] = rows.expand(name, pack_vectors(flat, present, width))


class _Rows:
    """Where each feature's values of a batch of requests come from: a candidate field has one value per row (all
    requests' candidates in order), a user, context or time field one per request, repeated over its rows."""

    def __init__(self, parts: Sequence[Part], candidate_extras: Collection[str]) -> None:
        self.candidates = [c.__dict__ for part in parts for c in part.candidates]  # fields by name: cheapest to read
        self.counts = np.array([len(part.candidates) for part in parts], dtype=np.int64)
        self.n = int(self.counts.sum())
        self.bounds = (0, *np.cumsum(self.counts).tolist())
        self.candidate_extras = frozenset(candidate_extras)
        self.shared = [{**_fields(part.user), **_fields(part.context),
                        **{name: time_value(name, part.ts) for name in TIME_FIELDS}} for part in parts]

    def values(self, name: str) -> list[Any]:
        """The values of ``name``: one per row for a candidate field, one per request for a shared one."""
        if name in _CANDIDATE_FIELDS:
            return list(map(itemgetter(name), self.candidates))
        if name in self.candidate_extras:
            return [c["features"].get(name) if c["features"] else None for c in self.candidates]
        return [shared.get(name) for shared in self.shared]

    def expand(self, name: str, values: np.ndarray) -> np.ndarray:
        """Per-row values of ``name``: a shared field's per-request values repeated over each request's rows."""
        if name in _CANDIDATE_FIELDS or name in self.candidate_extras:
            return values
        return np.repeat(values, self.counts, axis=0)


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
