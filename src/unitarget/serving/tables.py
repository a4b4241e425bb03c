"""Request bodies -> one pyarrow table with the contract's column names, typed as in a log.

The table is what ``FeatureEncoder.transform`` read at training time: one row per candidate, the
user's and the context's fields repeated on every row, ``ts`` from the request (or now), ``source``
null (no model reads it). Every standard feature column is present; a field the request left out is
null, which the encoder reads as unknown (OOV row, empty bag, zero dense input). Extra features
given (``extras``) become columns too, from the ``features`` of the object carrying their group.

The service scores requests through ``encoding.RequestEncoder`` instead (no table, one lookup per
distinct value); ``request_table`` stays the definition of what a request means as log rows, the
reference that encoder is tested against. Audience scoring builds its chunks from the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Final

import pyarrow as pa

from unitarget import contract
from unitarget.config import ExtraFeature
from unitarget.contract import Group, Kind
from unitarget.serving.schemas import Candidate, Context, User
from unitarget.validation import TS_TYPE

_ARROW_TYPES: Final = {Kind.CATEGORICAL: pa.string(), Kind.BAG: pa.list_(pa.string()), Kind.NUMERIC: pa.int64()}
#: Arrow type of every standard feature column.
COLUMN_TYPES: Final = {c.name: _ARROW_TYPES[c.kind] for c in contract.STANDARD_FEATURES}
#: Arrow type of an extra feature's column, by kind (a numeric extra may be fractional).
EXTRA_TYPES: Final = {**_ARROW_TYPES, Kind.NUMERIC: pa.float64(), Kind.VECTOR: pa.list_(pa.float32())}

#: Which request object carries a feature of each group, standard or extra.
CARRIER: Final = {Group.USER: "user", Group.CONTEXT: "context", Group.CONTENT: "candidates",
                  Group.CREATIVE: "candidates"}


def _carried_by(carrier: str) -> tuple[str, ...]:
    return tuple(c.name for c in contract.STANDARD_FEATURES if CARRIER[c.group] == carrier)


#: The standard features each request object carries (tests check these cover the contract).
USER_FIELDS: Final = _carried_by("user")
CONTEXT_FIELDS: Final = _carried_by("context")
CANDIDATE_FIELDS: Final = _carried_by("candidates")


def request_table(user: User, context: Context, candidates: Sequence[Candidate],
                  now: datetime | None = None, extras: Sequence[ExtraFeature] = ()) -> pa.Table:
    """(len(candidates) rows) the user and context repeated, one candidate per row."""
    n = len(candidates)
    columns = constant_columns(user, USER_FIELDS, n)
    columns |= context_columns(context, n, now)
    columns |= {name: pa.array([getattr(c, name) for c in candidates], type=COLUMN_TYPES[name])
                for name in CANDIDATE_FIELDS}
    for extra in extras:
        kind = EXTRA_TYPES[extra.kind]
        if CARRIER[extra.group] == "candidates":
            columns[extra.name] = pa.array([(c.features or {}).get(extra.name) for c in candidates], type=kind)
        else:
            item = user if CARRIER[extra.group] == "user" else context
            columns[extra.name] = pa.repeat(pa.scalar((item.features or {}).get(extra.name), type=kind), n)
    return pa.table(columns)


def context_columns(context: Context, n: int, now: datetime | None = None) -> dict[str, pa.Array]:
    """Context fields, ``ts`` (the request's, else ``now``, else the clock) and a null ``source``."""
    ts = context.ts or now or datetime.now(timezone.utc)
    return constant_columns(context, CONTEXT_FIELDS, n) | {
        contract.TS: pa.repeat(pa.scalar(ts, type=TS_TYPE), n),
        contract.SOURCE: pa.nulls(n, pa.string()),
    }


def constant_columns(item: Any, names: Sequence[str], n: int) -> dict[str, pa.Array]:
    """``n`` copies of ``item``'s value of each of ``names`` (null where it has none)."""
    return {name: pa.repeat(pa.scalar(getattr(item, name), type=COLUMN_TYPES[name]), n) for name in names}
