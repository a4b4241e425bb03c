"""Reading logs (file, directory, hive partitions) and atomic writes."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unitarget.errors import UnitargetError
from unitarget.io import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    read_log,
)


@pytest.fixture
def table() -> pa.Table:
    return pa.table(
        {
            "impression_id": [f"i{k}" for k in range(6)],
            "date": ["2026-01-01"] * 3 + ["2026-01-02"] * 3,
            "stream": pa.array([0, 1, None, 1, 0, 1], pa.int8()),
        }
    )


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


# --- reading ---------------------------------------------------------------------------------------


def test_read_single_file(table: pa.Table, tmp_path: Path) -> None:
    pq.write_table(table, tmp_path / "log.parquet")
    assert read_log(tmp_path / "log.parquet").equals(table)
    assert read_log(str(tmp_path / "log.parquet"), columns=["stream", "absent"]).column_names == ["stream"]


def test_read_directory_in_file_order(table: pa.Table, tmp_path: Path) -> None:
    pq.write_table(table.slice(0, 4), tmp_path / "part-0.parquet")
    pq.write_table(table.slice(4), tmp_path / "part-1.parquet")
    (tmp_path / "_SUCCESS").write_text("")  # marker files are ignored
    assert read_log(tmp_path).equals(table)


def test_read_directory_unifies_schemas(table: pa.Table, tmp_path: Path) -> None:
    pq.write_table(table.slice(0, 3).drop_columns(["stream"]), tmp_path / "part-0.parquet")
    pq.write_table(table.slice(3), tmp_path / "part-1.parquet")
    read = read_log(tmp_path)
    assert read.column("stream").to_pylist() == [None, None, None, 1, 0, 1]


def test_read_hive_partitions(table: pa.Table, tmp_path: Path) -> None:
    pq.write_to_dataset(table, tmp_path / "log", partition_cols=["date"])
    assert (tmp_path / "log" / "date=2026-01-01").is_dir()
    read = read_log(tmp_path / "log")
    assert set(read.column_names) == {"impression_id", "stream", "date"}
    by_id = dict(zip(read["impression_id"].to_pylist(), read["date"].to_pylist()))
    assert by_id == dict(zip(table["impression_id"].to_pylist(), table["date"].to_pylist()))
    assert read_log(tmp_path / "log", columns=["date"]).num_rows == 6


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UnitargetError, match="not found.*nowhere"):
        read_log(tmp_path / "nowhere.parquet")


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(UnitargetError, match="empty directory"):
        read_log(tmp_path)


def test_non_parquet_file(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UnitargetError, match="log.csv"):
        read_log(tmp_path / "log.csv")


def test_non_parquet_file_in_directory(table: pa.Table, tmp_path: Path) -> None:
    pq.write_table(table, tmp_path / "a.parquet")
    (tmp_path / "b.txt").write_text("not parquet")
    with pytest.raises(UnitargetError, match="b.txt"):
        read_log(tmp_path)


# --- atomic writes ---------------------------------------------------------------------------------


def test_write_bytes_and_text(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "sub" / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "a.txt", "héllo")
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert _leftovers(tmp_path / "sub") == []


def test_new_file_gets_normal_permissions(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("x")  # what open() gives under the current umask
    atomic_write_text(tmp_path / "atomic.txt", "x")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt")


def test_write_json_sorted_indented_nan_as_null(tmp_path: Path) -> None:
    obj = {
        "b": math.nan,
        "a": [1.5, math.inf, np.float32(0.25)],
        "c": {"z": np.int64(3), "y": np.array([1, 2])},
    }
    atomic_write_json(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text()
    assert text == json.dumps(
        {"a": [1.5, None, 0.25], "b": None, "c": {"y": [1, 2], "z": 3}}, indent=2, sort_keys=True
    ) + "\n"
    assert "NaN" not in text and "Infinity" not in text


def test_write_parquet_round_trip(table: pa.Table, tmp_path: Path) -> None:
    atomic_write_parquet(table, tmp_path / "p.parquet")
    assert pq.read_table(tmp_path / "p.parquet").equals(table)


def test_exception_mid_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    atomic_write_bytes(target, b"previous model")
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_output(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".pt" and tmp != target
            tmp.write_bytes(b"half a new mod")
            raise RuntimeError("crash")
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_unserialisable_json_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic_write_json(target, {"ok": 1})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failing_parquet_write_keeps_previous_file(table: pa.Table, tmp_path: Path) -> None:
    target = tmp_path / "pred.parquet"
    atomic_write_parquet(table, target)
    before = target.read_bytes()
    with pytest.raises(Exception):
        atomic_write_parquet(table, target, compression="no-such-codec")
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failing_rename_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_output_for_path_based_writers(tmp_path: Path) -> None:
    target = tmp_path / "weights.npy"
    with atomic_output(target) as tmp:
        np.save(tmp, np.arange(3))  # np.save appends .npy unless the name ends with it
    assert np.load(target).tolist() == [0, 1, 2]
    assert _leftovers(tmp_path) == []
