"""Validate an impression log against the data contract before any work is done.

``validate_log`` stops at the first violation with a :class:`ContractError` that names the column,
the first offending rows (0-based positions in the table as read) and how many rows are affected.
Checks run in this order, each vectorised with ``pyarrow.compute`` / numpy (no Python loop over
rows): required columns present -> not empty -> Arrow types -> no nulls in id columns -> timestamps
parse -> known sources -> labels in {0, 1, null} -> unique impression ids -> finite numbers (and
equal vector lengths) -> non-negative counts -> propensities in (0, 1] (only if the optional
``propensity`` column is present; null = unknown).

``normalise_ts`` then gives ``ts`` one type, ``timestamp[us, tz=UTC]``, whatever it was stored as.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget.contract import (
    DEFAULT_SOURCES,
    IMPRESSION_ID,
    LABELS,
    PROPENSITY,
    REQUIRED_COLUMNS,
    REQUIRED_LABEL,
    SHOW_ID,
    SHOW_STREAMS_30D,
    SOURCE,
    STANDARD_FEATURES,
    TS,
    USER_ID,
    Kind,
)
from unitarget.errors import MAX_ROWS_SHOWN, ContractError
from unitarget.iso8601 import parse_iso8601

__all__ = ["TS_TYPE", "ValidationReport", "normalise_ts", "validate_log"]

#: The one type ``ts`` has after ``normalise_ts``.
TS_TYPE: Final = pa.timestamp("us", tz="UTC")

#: Required columns that may hold no null (``stream`` may: null means "not observed").
ID_COLUMNS: Final = (IMPRESSION_ID, TS, SOURCE, USER_ID, SHOW_ID)
#: Standard numeric features that are counts and so cannot be negative.
COUNT_COLUMNS: Final = (SHOW_STREAMS_30D, "show_age_days")

# Expected kinds of column, and how the messages describe them.
_STRING, _TIMESTAMP, _LABEL = "string", "timestamp", "label"
_NUMERIC, _BAG, _VECTOR = "numeric", "bag", "vector"
_EXPECTED: Final = {
    _STRING: "string (string, large_string or dictionary<string>)",
    _TIMESTAMP: "timestamp (any unit; tz-naive read as UTC) or an ISO-8601 string",
    _LABEL: "int8/bool (any integer or bool; float only if every value is 0.0, 1.0 or null)",
    _NUMERIC: "an integer or float number",
    _BAG: "list<string> or large_list<string>",
    _VECTOR: "an integer or float number, or a fixed-size list<float>",
}
_KIND_OF_FEATURE: Final = {
    Kind.CATEGORICAL: _STRING,
    Kind.BAG: _BAG,
    Kind.NUMERIC: _NUMERIC,
    Kind.VECTOR: _VECTOR,
}


@dataclass(frozen=True)
class ValidationReport:
    """What a valid log holds, for the configuration and the run report."""

    n_rows: int
    present_features: tuple[str, ...]  # standard feature columns present, contract order
    skipped_features: tuple[str, ...]  # standard feature columns absent (the default config skips them)
    label_columns: tuple[str, ...]  # label columns present, contract order


def validate_log(
    table: pa.Table,
    *,
    sources: Sequence[str] = DEFAULT_SOURCES,
    require_labels: bool = True,
    extra_numeric: Sequence[str] = (),
    extra_labels: Sequence[str] = (),
) -> ValidationReport:
    """Check ``table`` against the contract; raise ``ContractError`` on the first violation.

    Args:
        table: the log as read by ``unitarget.io.read_log``.
        sources: the declared channels; any other ``source`` value is an error.
        require_labels: False when scoring: ``stream`` may then be absent (but is checked if present).
        extra_numeric: further numeric or float-vector columns the configuration declares.
        extra_labels: label columns of configured tasks beyond the contract's four; required when
            ``require_labels``, and checked like the contract's labels.
    """
    labels = (*LABELS, *(name for name in extra_labels if name not in LABELS))
    _check_present(table, require_labels, (*extra_numeric, *(labels[len(LABELS):] if require_labels else ())))
    if table.num_rows == 0:
        raise ContractError("empty dataset: the impression log has 0 rows", column=None, count=0)
    kinds = _expected_kinds(extra_numeric) | {name: _LABEL for name in labels}
    present = {name: kind for name, kind in kinds.items() if name in table.column_names}
    for name, kind in present.items():
        _check_type(table, name, kind)
    for name in ID_COLUMNS:
        _check_not_null(table, name)
    _ts_as_utc_us(table.column(TS))  # raises on unparsable or out-of-range timestamps
    _check_sources(table.column(SOURCE), sources)
    for name in labels:
        if name in present:
            _check_label(name, table.column(name))
    _check_unique(table.column(IMPRESSION_ID))
    for name, kind in present.items():
        if kind in (_NUMERIC, _VECTOR):
            _check_finite(name, table.column(name))
    for name in COUNT_COLUMNS:
        if name in present:
            column = table.column(name)
            _raise_rows(name, _mask(pc.less(column, 0)), "a negative value (it is a count)", column)
    if PROPENSITY in present:
        column = table.column(PROPENSITY)
        outside = pc.or_(pc.less_equal(column, 0), pc.greater(column, 1))
        _raise_rows(PROPENSITY, _mask(outside), "a propensity outside (0, 1]", column)
    features = [f.name for f in STANDARD_FEATURES]
    return ValidationReport(
        n_rows=table.num_rows,
        present_features=tuple(n for n in features if n in table.column_names),
        skipped_features=tuple(n for n in features if n not in table.column_names),
        label_columns=tuple(n for n in labels if n in table.column_names),
    )


def normalise_ts(table: pa.Table) -> pa.Table:
    """Return ``table`` with ``ts`` as ``timestamp[us, tz=UTC]`` (``TS_TYPE``), in place of its column.

    Accepts what ``validate_log`` accepts: a timestamp of any unit (tz-naive values are UTC; zoned
    values keep their instant; nanoseconds are floored to microseconds) or ISO-8601 strings.
    """
    if TS not in table.column_names:
        raise ContractError(f"missing required column {TS!r}", column=TS, count=1)
    if table.schema.field(TS).type == TS_TYPE and table.column(TS).null_count == 0:
        return table
    _check_type(table, TS, _TIMESTAMP)
    _check_not_null(table, TS)
    index = table.column_names.index(TS)
    return table.set_column(index, pa.field(TS, TS_TYPE), _ts_as_utc_us(table.column(TS)))


# ---------------------------------------------------------------------------------------------------
# Column-level checks
# ---------------------------------------------------------------------------------------------------


def _check_present(table: pa.Table, require_labels: bool, declared: Sequence[str]) -> None:
    have = table.column_names
    required = [c for c in REQUIRED_COLUMNS if require_labels or c != REQUIRED_LABEL]
    missing = [c for c in required if c not in have]
    what = "required column"
    if not missing:
        missing = [c for c in declared if c not in have]
        what = "column declared by the configuration"
    if not missing:
        return
    hints = []
    for name in missing:
        same_case = [c for c in have if c.lower() == name.lower()]
        close = same_case or difflib.get_close_matches(name, have, n=1, cutoff=0.8)
        if close:
            hints.append(f"{close[0]!r} for {name!r}")
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    listed = ", ".join(repr(c) for c in have) or "none"
    raise ContractError(
        f"missing {what}{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}{hint}; "
        f"the log has columns {listed}",
        column=missing[0],
        count=len(missing),
    )


def _expected_kinds(extra_numeric: Sequence[str]) -> dict[str, str]:
    kinds = {IMPRESSION_ID: _STRING, TS: _TIMESTAMP, SOURCE: _STRING, USER_ID: _STRING, SHOW_ID: _STRING}
    kinds.update({label: _LABEL for label in LABELS})
    kinds[PROPENSITY] = _NUMERIC
    for feature in STANDARD_FEATURES:
        kinds.setdefault(feature.name, _KIND_OF_FEATURE[feature.kind])
    for name in extra_numeric:
        if kinds.get(name, _NUMERIC) == _NUMERIC:
            kinds[name] = _VECTOR
    return kinds


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _type_ok(t: pa.DataType, kind: str) -> bool:
    if kind == _STRING:
        return _is_string(t)
    if kind == _TIMESTAMP:
        return pa.types.is_timestamp(t) or _is_string(t)
    if kind == _LABEL:
        return _is_number(t) or pa.types.is_boolean(t)
    if kind == _NUMERIC:
        return _is_number(t)
    if kind == _BAG:
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string(t.value_type)
    return _is_number(t) or (_is_list(t) and _is_number(t.value_type))  # _VECTOR


def _check_type(table: pa.Table, name: str, kind: str) -> None:
    actual = table.schema.field(name).type
    if _type_ok(actual, kind):
        return
    hint = ""
    if pa.types.is_null(actual):
        hint = " (the column holds only nulls and was written without a type: give it one, or drop it)"
    raise ContractError(
        f"column {name!r}: wrong type: expected {_EXPECTED[kind]}, got {actual}{hint}",
        column=name,
        count=table.num_rows,
    )


# ---------------------------------------------------------------------------------------------------
# Row-level checks
# ---------------------------------------------------------------------------------------------------


def _mask(condition: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean pyarrow result -> numpy mask over rows; null counts as False."""
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary and string_view strings as large_string, so every compute kernel accepts them."""
    t = column.type
    if pa.types.is_dictionary(t) or pa.types.is_string_view(t):
        return column.cast(pa.large_string())
    return column


def _raise_rows(
    column: str,
    mask: np.ndarray,
    problem: str | tuple[str, str],
    values: pa.ChunkedArray | pa.Array | None = None,
    shown: list[object] | None = None,
) -> None:
    """Raise ContractError if any row is flagged in ``mask``; nothing otherwise.

    ``problem`` reads after "N rows have" ((singular, plural) where they differ). The first offending
    values are taken from ``values`` at those rows, or given directly as ``shown``.
    """
    positions = np.flatnonzero(mask)
    count = int(positions.size)
    if count == 0:
        return
    first = positions[:MAX_ROWS_SHOWN]
    singular, plural = (problem, problem) if isinstance(problem, str) else problem
    head = f"1 row has {singular}" if count == 1 else f"{count} rows have {plural}"
    rows = ", ".join(str(int(r)) for r in first)
    message = f"column {column!r}: {head}; {'row' if count == 1 else 'first rows'} {rows}"
    if shown is None and values is not None:
        shown = values.take(pa.array(first, type=pa.int64())).to_pylist()
    if shown is not None:
        message += f" with value{'' if count == 1 else 's'} {', '.join(repr(v) for v in shown)}"
    raise ContractError(message, column=column, rows=first.tolist(), count=count)


def _check_not_null(table: pa.Table, name: str) -> None:
    column = table.column(name)
    if column.null_count:
        problem = "a null value (the column is required and may not be null)"
        _raise_rows(name, _mask(pc.is_null(column)), problem)


def _check_sources(column: pa.ChunkedArray, sources: Sequence[str]) -> None:
    column = _plain(column)
    allowed = pa.array(list(sources), type=column.type)
    unknown = _mask(pc.invert(pc.is_in(column, value_set=allowed)))
    _raise_rows(SOURCE, unknown, f"a value outside the declared sources ({', '.join(sources)})", column)


def _check_label(name: str, column: pa.ChunkedArray) -> None:
    if pa.types.is_boolean(column.type):
        return
    if pa.types.is_floating(column.type):
        hint = " (write null for 'not observed')"
        _raise_rows(name, _mask(pc.is_nan(column)), ("a NaN label" + hint, "NaN labels" + hint), column)
    outside = pc.and_(pc.not_equal(column, 0), pc.not_equal(column, 1))
    _raise_rows(name, _mask(outside), "a label outside {0, 1, null}", column)


def _check_unique(column: pa.ChunkedArray) -> None:
    column = _plain(column)
    if pc.count_distinct(column).as_py() == len(column):
        return
    counts = pa.table({"id": column}).group_by("id").aggregate([("id", "count")])
    repeated = counts.filter(pc.greater(counts["id_count"], 1))["id"].combine_chunks()
    mask = _mask(pc.is_in(column, value_set=repeated))
    ids = f"{len(repeated)} distinct id{'s' if len(repeated) > 1 else ''}"
    problem = f"an impression_id shared with another row ({ids} repeated)"
    _raise_rows(IMPRESSION_ID, mask, problem, column)


def _check_finite(name: str, column: pa.ChunkedArray) -> None:
    """No NaN or infinity in a number or vector column; variable-length lists must agree in length."""
    t = column.type
    if not _is_list(t):
        if pa.types.is_floating(t):
            bad = _mask(pc.invert(pc.is_finite(_upcast(column))))
            _raise_rows(name, bad, "a NaN or infinite number", column)
        return
    if not pa.types.is_fixed_size_list(t):
        lengths = pc.list_value_length(column)
        expected = pc.drop_null(lengths)[0].as_py() if lengths.null_count < len(lengths) else 0
        problem = f"a vector length other than {expected} (the first vector's)"
        _raise_rows(name, _mask(pc.not_equal(lengths, expected)), problem, shown=None)
    if not pa.types.is_floating(t.value_type):
        return
    values = _upcast(pc.list_flatten(column))
    parents = np.asarray(pc.list_parent_indices(column).to_numpy(zero_copy_only=False))
    bad = _mask(pc.invert(pc.is_finite(values)))
    mask = np.zeros(len(column), dtype=bool)
    mask[parents[bad]] = True
    rows, first_value = np.unique(parents[bad], return_index=True)  # first bad value of each row
    shown = values.take(pa.array(np.flatnonzero(bad)[first_value][:MAX_ROWS_SHOWN])).to_pylist()
    problem = ("a NaN or infinite number in its vector", "NaN or infinite numbers in their vectors")
    _raise_rows(name, mask, problem, shown=shown if rows.size else None)


def _upcast(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return values.cast(pa.float32()) if pa.types.is_float16(values.type) else values


# ---------------------------------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------------------------------


def _ts_as_utc_us(column: pa.ChunkedArray) -> pa.Array:
    """``ts`` (non-null, any timestamp unit or ISO-8601 strings) as UTC microseconds; raise on bad rows."""
    if _is_string(column.type):
        micros, ok = parse_iso8601(column)
        problem = ("an unparsable timestamp", "unparsable timestamps")
        hint = " (expected ISO-8601, e.g. '2026-01-01T12:00:00Z'; no zone means UTC)"
        _raise_rows(TS, ~ok, (problem[0] + hint, problem[1] + hint), column)
        return pa.array(micros, type=TS_TYPE)
    unit = column.type.unit
    raw = np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if unit == "ns":
        return pa.array(raw // 1000, type=TS_TYPE)  # floor, so instants before 1970 stay ordered
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    out_of_range = np.abs(raw) > np.iinfo(np.int64).max // factor
    _raise_rows(TS, out_of_range, "a timestamp out of range (beyond year 294,000)", column)
    return pa.array(raw * factor, type=TS_TYPE)
