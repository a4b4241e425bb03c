"""Validation of impression logs against docs/data-contract.md: one test per bad-input case."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unitarget.contract import LABELS, STANDARD_FEATURES
from unitarget.errors import ContractError, UnitargetError
from unitarget.io import read_log
from unitarget.validation import TS_TYPE, ValidationReport, normalise_ts, validate_log

N = 20


LIST_STR = pa.list_(pa.string())
LIST_F64 = pa.list_(pa.float64())


def _col(values: list, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type=type_)


@pytest.fixture
def log() -> pa.Table:
    """A valid 20-row log with every required, label and standard feature column."""
    rng = np.random.default_rng(0)
    start = dt.datetime(2026, 1, 1)
    strings = lambda prefix, k: [f"{prefix}{i % k}" for i in range(N)]  # noqa: E731
    return pa.table(
        {
            "impression_id": [f"imp{i}" for i in range(N)],
            "ts": _col([start + dt.timedelta(hours=i) for i in range(N)], pa.timestamp("ms")),
            "source": ["ads" if i % 3 else "promotions" for i in range(N)],
            "user_id": strings("u", 7),
            "show_id": strings("s", 5),
            "stream": _col([None if i == 4 else int(rng.integers(0, 2)) for i in range(N)], pa.int8()),
            "click": _col([bool(i % 2) for i in range(N)], pa.bool_()),
            "like": _col([None if i % 3 == 0 else i % 2 for i in range(N)], pa.int8()),
            "follow": _col([i % 2 for i in range(N)], pa.int8()),
            "user_country": strings("c", 3),
            "user_age_bucket": ["18-24"] * N,
            "user_history_shows": _col([[f"s{j}" for j in range(i % 3)] for i in range(N)], LIST_STR),
            "user_followed_shows": _col([["s1"]] * N, pa.list_(pa.string())),
            "episode_id": [None if i % 2 else f"e{i}" for i in range(N)],
            "show_genre": strings("g", 4),
            "show_topics": _col([["comedy", "news"]] * N, pa.list_(pa.string())),
            "show_publisher": strings("p", 2),
            "show_streams_30d": _col([i * 1000 for i in range(N)], pa.int64()),
            "show_age_days": _col([i + 30 for i in range(N)], pa.int32()),
            "surface": ["home_shelf"] * N,
            "device": ["ios"] * N,
            "format": ["audio"] * N,
            "campaign_id": strings("camp", 3),
            "creative_id": strings("cr", 6),
            "slot": ["pre"] * N,
            "layout": ["card"] * N,
        }
    )


def _replace(table: pa.Table, name: str, values: pa.Array | list) -> pa.Table:
    array = values if isinstance(values, pa.Array) else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def _with(table: pa.Table, name: str, rows: dict[int, object], type_: pa.DataType | None = None) -> pa.Table:
    values = table.column(name).to_pylist()
    for row, value in rows.items():
        values[row] = value
    return _replace(table, name, pa.array(values, type=type_ or table.schema.field(name).type))


def _fails(table: pa.Table, **kwargs: object) -> ContractError:
    with pytest.raises(ContractError) as info:
        validate_log(table, **kwargs)
    assert isinstance(info.value, UnitargetError)
    return info.value


def _assert_rows(err: ContractError, column: str, rows: list[int], count: int) -> None:
    assert (err.column, err.rows, err.count) == (column, rows, count)
    message = str(err)
    assert f"column {column!r}" in message
    assert f"{count} rows" in message or (count == 1 and "1 row" in message)
    assert ", ".join(map(str, rows)) in message


# --- valid logs ------------------------------------------------------------------------------------


def test_valid_log_passes_and_reports_features(log: pa.Table) -> None:
    report = validate_log(log)
    assert report == ValidationReport(
        n_rows=N,
        present_features=tuple(f.name for f in STANDARD_FEATURES),
        skipped_features=(),
        label_columns=LABELS,
    )


def test_report_lists_skipped_features(log: pa.Table) -> None:
    report = validate_log(log.drop_columns(["layout", "show_topics", "like"]))
    assert report.skipped_features == ("show_topics", "layout")
    assert "layout" not in report.present_features
    assert report.label_columns == ("stream", "click", "follow")


@pytest.mark.parametrize(
    ("column", "array"),
    [
        ("impression_id", pa.array([f"imp{i}" for i in range(N)], pa.large_string())),
        ("source", pa.array(["ads"] * N).dictionary_encode()),
        ("ts", pa.array(range(N), pa.timestamp("s"))),
        ("ts", pa.array(range(N), pa.timestamp("ns", tz="Europe/Stockholm"))),
        ("ts", pa.array([f"2026-01-01T{i:02d}:00:00Z" for i in range(N)])),
        ("stream", pa.array([True, False] * 10)),
        ("stream", pa.array([1, 0] * 10, pa.uint8())),
        ("stream", pa.array([1.0, 0.0, None, 1.0] * 5)),
        ("show_streams_30d", pa.array([1.5] * N)),
        ("show_topics", pa.array([["a"]] * N, pa.large_list(pa.large_string()))),
    ],
)
def test_accepted_type_variants(log: pa.Table, column: str, array: pa.Array) -> None:
    validate_log(_replace(log, column, array))


def test_scoring_without_stream(log: pa.Table) -> None:
    report = validate_log(log.drop_columns(["stream"]), require_labels=False)
    assert "stream" not in report.label_columns


def test_scoring_still_checks_stream_if_present(log: pa.Table) -> None:
    err = _fails(_with(log, "stream", {2: 3}), require_labels=False)
    _assert_rows(err, "stream", [2], 1)


def test_declared_sources(log: pa.Table) -> None:
    table = _with(log, "source", {0: "email"})
    validate_log(table, sources=("ads", "promotions", "email"))
    _fails(table)


def test_extra_numeric_columns(log: pa.Table) -> None:
    table = _replace(log, "score", pa.array(np.linspace(0, 1, N)))
    table = _replace(table, "emb", pa.array([[0.1, 0.2]] * N, pa.list_(pa.float32(), 2)))
    validate_log(table, extra_numeric=("score", "emb"))


def test_hive_partitioned_directory_validates(log: pa.Table, tmp_path: Path) -> None:
    table = log.append_column("date", pa.array(["2026-01-01"] * 10 + ["2026-01-02"] * 10))
    pq.write_to_dataset(table, tmp_path / "log", partition_cols=["date", "source"])
    read = read_log(tmp_path / "log")
    assert sorted(read.column_names) == sorted(table.column_names)
    assert validate_log(read).n_rows == N


# --- 1. missing required columns -------------------------------------------------------------------


def test_missing_required_columns_are_listed_with_present_ones(log: pa.Table) -> None:
    err = _fails(log.drop_columns(["show_id", "source"]))
    assert (err.column, err.count, err.rows) == ("source", 2, [])
    assert "'source', 'show_id'" in str(err)
    assert "'impression_id'" in str(err) and "'layout'" in str(err)


def test_missing_column_suggests_near_miss(log: pa.Table) -> None:
    err = _fails(log.rename_columns(["Stream" if c == "stream" else c for c in log.column_names]))
    assert err.column == "stream"
    assert "did you mean 'Stream'" in str(err)


def test_missing_declared_extra_column(log: pa.Table) -> None:
    err = _fails(log, extra_numeric=("emb",))
    assert err.column == "emb" and "configuration" in str(err)


# --- 2. wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "array", "actual"),
    [
        ("impression_id", pa.array(range(N), pa.int64()), "int64"),
        ("ts", pa.array(range(N), pa.int64()), "int64"),
        ("stream", pa.array(["1"] * N), "string"),
        ("click", pa.array([None] * N, pa.null()), "null"),
        ("show_streams_30d", pa.array(["10"] * N), "string"),
        ("show_streams_30d", pa.array([True] * N), "bool"),
        ("user_history_shows", pa.array(["s1"] * N), "string"),
        ("show_topics", pa.array([[1]] * N, pa.list_(pa.int64())), "list<item: int64>"),
        ("user_country", pa.array(range(N), pa.int32()), "int32"),
    ],
)
def test_wrong_type(log: pa.Table, column: str, array: pa.Array, actual: str) -> None:
    err = _fails(_replace(log, column, array))
    assert (err.column, err.rows, err.count) == (column, [], N)
    assert f"column {column!r}: wrong type: expected" in str(err)
    assert f"got {actual}" in str(err)


def test_wrong_type_for_extra_vector(log: pa.Table) -> None:
    err = _fails(_replace(log, "emb", pa.array([["x"]] * N)), extra_numeric=("emb",))
    assert err.column == "emb" and "fixed-size list<float>" in str(err)


# --- 3. unknown source -----------------------------------------------------------------------------


def test_unknown_source_message(log: pa.Table) -> None:
    table = pa.concat_tables([log, log.slice(0, 10), log.slice(0, 20)])  # 50 rows
    table = _replace(table, "impression_id", [f"i{k}" for k in range(len(table))])
    err = _fails(_with(table, "source", {5: "adz", 17: "Ads", 40: ""}))
    assert str(err) == (
        "column 'source': 3 rows have a value outside the declared sources (ads, promotions); "
        "first rows 5, 17, 40 with values 'adz', 'Ads', ''"
    )
    _assert_rows(err, "source", [5, 17, 40], 3)


def test_unknown_source_in_dictionary_column(log: pa.Table) -> None:
    table = _replace(log, "source", _with(log, "source", {3: "radio"}).column("source").dictionary_encode())
    _assert_rows(_fails(table), "source", [3], 1)


# --- 4. labels outside {0, 1, null}, NaN labels ----------------------------------------------------


@pytest.mark.parametrize(
    ("column", "rows", "type_", "needle"),
    [
        ("stream", {3: 2}, pa.int8(), "outside {0, 1, null}"),
        ("click", {1: -1, 9: 2}, pa.int64(), "outside {0, 1, null}"),
        ("like", {0: 7}, pa.uint16(), "outside {0, 1, null}"),
        ("follow", {2: 0.5, 6: math.inf}, pa.float64(), "outside {0, 1, null}"),
        ("stream", {5: math.nan, 8: math.nan}, pa.float32(), "NaN labels"),
    ],
)
def test_label_outside_binary(
    log: pa.Table, column: str, rows: dict[int, float], type_: pa.DataType, needle: str
) -> None:
    values = [i % 2 for i in range(N)]
    for row, value in rows.items():
        values[row] = value
    err = _fails(_replace(log, column, pa.array(values, type=type_)))
    _assert_rows(err, column, sorted(rows), len(rows))
    assert needle in str(err)


# --- 5. empty dataset ------------------------------------------------------------------------------


def test_empty_dataset(log: pa.Table) -> None:
    err = _fails(log.slice(0, 0))
    assert (err.column, err.rows, err.count) == (None, [], 0)
    assert "empty dataset" in str(err) and "0 rows" in str(err)


# --- 6. duplicate impression ids -------------------------------------------------------------------


def test_duplicate_impression_ids(log: pa.Table) -> None:
    err = _fails(_with(log, "impression_id", {7: "imp3", 12: "imp3", 15: "imp9"}))
    _assert_rows(err, "impression_id", [3, 7, 9, 12, 15], 5)
    assert "2 distinct ids repeated" in str(err)
    assert "'imp3', 'imp3', 'imp9', 'imp3', 'imp9'" in str(err)


# --- 7. timestamps: unparsable, null ---------------------------------------------------------------


def test_unparsable_timestamps(log: pa.Table) -> None:
    table = _replace(log, "ts", [f"2026-01-01T{i:02d}:00:00" for i in range(N)])
    err = _fails(_with(table, "ts", {2: "yesterday", 4: "2026-13-01", 11: "", 19: "2026-02-30T00:00"}))
    _assert_rows(err, "ts", [2, 4, 11, 19], 4)
    assert "unparsable timestamps" in str(err) and "'yesterday'" in str(err)


def test_null_timestamps(log: pa.Table) -> None:
    err = _fails(_with(log, "ts", {6: None}))
    _assert_rows(err, "ts", [6], 1)
    assert "null" in str(err)


def test_more_than_five_offenders_shows_five(log: pa.Table) -> None:
    err = _fails(_replace(log, "ts", ["bad"] * N))
    assert err.rows == [0, 1, 2, 3, 4] and err.count == N


# --- 8. NaN / infinite numbers ---------------------------------------------------------------------


def _vectors(rows: dict[int, list[float]], type_: pa.DataType) -> pa.Array:
    values = [[0.5, 0.5] for _ in range(N)]
    for row, value in rows.items():
        values[row] = value
    return pa.array(values, type=type_)



@pytest.mark.parametrize(
    ("column", "array", "rows", "extra"),
    [
        ("show_streams_30d", pa.array([1.0] * 3 + [math.nan] + [1.0] * 16), [3], ()),
        ("show_age_days", pa.array([1.0] * 8 + [math.inf, -math.inf] + [1.0] * 10, pa.float32()), [8, 9], ()),
        ("score", pa.array([0.0] * 19 + [math.nan]), [19], ("score",)),
        ("emb", _vectors({7: [0.0, math.nan]}, pa.list_(pa.float32(), 2)), [7], ("emb",)),
        ("emb", _vectors({2: [math.inf, 0.0], 4: [0.0, -math.inf]}, LIST_F64), [2, 4], ("emb",)),
    ],
)
def test_non_finite_numbers(
    log: pa.Table, column: str, array: pa.Array, rows: list[int], extra: tuple[str, ...]
) -> None:
    err = _fails(_replace(log, column, array), extra_numeric=extra)
    _assert_rows(err, column, rows, len(rows))
    assert "NaN or infinite" in str(err)


def test_vectors_of_different_lengths(log: pa.Table) -> None:
    array = pa.array([[0.0, 0.0]] * 5 + [[0.0]] + [[1.0, 1.0]] * 14, pa.list_(pa.float32()))
    err = _fails(_replace(log, "emb", array), extra_numeric=("emb",))
    _assert_rows(err, "emb", [5], 1)
    assert "length other than 2" in str(err)


# --- 9. nulls in required id columns ---------------------------------------------------------------


@pytest.mark.parametrize("column", ["impression_id", "source", "user_id", "show_id"])
def test_null_in_id_column(log: pa.Table, column: str) -> None:
    err = _fails(_with(log, column, {1: None, 13: None}))
    _assert_rows(err, column, [1, 13], 2)
    assert "null" in str(err)


def test_null_stream_is_allowed(log: pa.Table) -> None:
    validate_log(_replace(log, "stream", pa.array([None] * N, pa.int8())))


# --- 10. negative counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["show_streams_30d", "show_age_days"])
def test_negative_counts(log: pa.Table, column: str) -> None:
    err = _fails(_with(log, column, {0: -1, 10: -5}))
    _assert_rows(err, column, [0, 10], 2)
    assert "negative" in str(err) and "-1, -5" in str(err)


# --- normalise_ts ----------------------------------------------------------------------------------

ISO_GOLDEN = [
    "2026-01-01",
    "2026-01-01T12:30",
    "2026-01-01 12:30:15",
    "2026-03-31T23:59:59.123456",
    "2026-03-31T23:59:59.1234567",  # nanoseconds: floored to microseconds
    "2024-02-29T00:00:00Z",
    "2026-06-01T12:00:00+02:00",
    "2026-06-01T12:00:00-0530",
    "1969-12-31T23:59:59.5",
    "1900-03-01T00:00:00",
]


def test_normalise_ts_parses_iso8601_like_python(log: pa.Table) -> None:
    table = normalise_ts(_replace(log.slice(0, len(ISO_GOLDEN)), "ts", ISO_GOLDEN))
    assert table.schema.field("ts").type == TS_TYPE
    assert table.column_names == log.column_names
    expected = []
    for text in ISO_GOLDEN:
        parsed = dt.datetime.fromisoformat(text)  # Python truncates extra fraction digits too
        expected.append(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc))
    assert table.column("ts").to_pylist() == expected


@pytest.mark.parametrize(
    "array",
    [
        pa.array([0, 3_600_000], pa.timestamp("ms")),
        pa.array([0, 3_600], pa.timestamp("s", tz="UTC")),
        pa.array([0, 3_600_000_000_999], pa.timestamp("ns", tz="America/New_York")),
        pa.array(["1970-01-01T01:00:00+01:00", "1970-01-01T01:00:00Z"]).dictionary_encode(),
    ],
)
def test_normalise_ts_from_timestamps(log: pa.Table, array: pa.Array) -> None:
    table = normalise_ts(_replace(log.slice(0, 2), "ts", array))
    assert table.schema.field("ts").type == TS_TYPE
    micros = table.column("ts").cast(pa.int64()).to_pylist()
    assert micros in ([0, 3_600_000_000], [0, 0])


def test_normalise_ts_rejects_bad_rows(log: pa.Table) -> None:
    with pytest.raises(ContractError) as info:
        normalise_ts(_replace(log.slice(0, 3), "ts", ["2026-01-01", "soon", None]))
    assert info.value.column == "ts" and info.value.rows == [2]  # nulls reported before parsing


def test_row_positions_are_global_across_chunks(log: pa.Table) -> None:
    emb = pa.chunked_array([_vectors({}, LIST_F64)[:12], _vectors({15: [math.nan, 0.0]}, LIST_F64)[12:]])
    table = _replace(log, "source", _with(log, "source", {17: "tv"}).column("source").chunk(0))
    table = pa.Table.from_batches(table.to_batches(max_chunksize=8))  # 3 chunks per column
    assert table.column("source").num_chunks == 3
    _assert_rows(_fails(table), "source", [17], 1)
    _assert_rows(_fails(log.append_column("emb", emb), extra_numeric=("emb",)), "emb", [15], 1)
