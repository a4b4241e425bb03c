"""Reading impression logs and writing files atomically.

Reads go through ``pyarrow.dataset`` so that a single Parquet file, a directory of files and a
hive-partitioned tree (``date=2026-01-01/part-0.parquet``) all come back as one ``pyarrow.Table``;
partition keys become columns. Nothing is converted to pandas.

Every write goes to a temporary file beside the target, is flushed and fsynced, then renamed over
the target with ``os.replace`` (atomic on POSIX and Windows). If anything fails before the rename,
the temporary file is removed and an existing target is left byte-for-byte untouched, so a crash or
a bad input never destroys a model or report written earlier.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from unitarget.errors import UnitargetError

__all__ = [
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "count_log_rows",
    "iter_log",
    "log_files",
    "publish_directory",
    "read_log",
    "remove_temporary_files",
]


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


def read_log(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read an impression log: one Parquet file, or a directory (hive partitions allowed).

    Files in a directory are read in sorted path order (files whose names start with ``.`` or ``_``,
    such as ``_SUCCESS``, are ignored). Schemas of different files are unified, so a column missing
    from some files reads as null there.

    Args:
        path: a ``.parquet`` file or a directory of them.
        columns: read only these columns; requested columns the log lacks are left out (so that
            ``validate_log`` can name them), not an error here.

    Raises:
        UnitargetError: the path does not exist, the directory holds no Parquet files, a file is not
            Parquet, or the files' schemas cannot be unified.
    """
    root = _existing(path)
    dataset = _open_dataset(root)
    if columns is not None:
        names = set(dataset.schema.names)
        columns = [c for c in columns if c in names]
    try:
        return dataset.to_table(columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise UnitargetError(f"cannot read impression log {str(root)!r}: {exc}") from exc


def iter_log(data: str | Path | pa.Table, rows: int) -> Iterator[tuple[int, pa.Table]]:
    """(first row, chunk) pairs of at most ``rows`` rows, in log order, for bounded-memory passes.

    A path is read file by file and batch by batch (``ParquetFile.iter_batches`` without
    pre-buffering: a row group's columns are read a buffer at a time, not whole), so memory holds
    about one chunk whatever the size of the log or of its row groups. Each chunk has the whole
    log's unified schema, hive partition keys included, as ``read_log`` gives it; a table is
    sliced without copying.
    """
    if isinstance(data, pa.Table):
        for start in range(0, data.num_rows, rows):
            yield start, data.slice(start, rows)
        return
    root = _existing(data)
    dataset, start = _open_dataset(root), 0
    try:
        for fragment in sorted(dataset.get_fragments(), key=lambda f: f.path):
            keys = ds.get_partition_keys(fragment.partition_expression)
            file = pq.ParquetFile(fragment.path, pre_buffer=False, buffer_size=_READ_BUFFER)
            for batch in file.iter_batches(batch_size=rows, use_threads=False):
                if batch.num_rows:
                    yield start, _conform(pa.Table.from_batches([batch]), dataset.schema, keys)
                    start += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise UnitargetError(f"cannot read impression log {str(root)!r}: {exc}") from exc


#: Bytes read at a time from a column chunk by ``iter_log``.
_READ_BUFFER = 1 << 20


def _conform(table: pa.Table, schema: pa.Schema, keys: Mapping[str, Any]) -> pa.Table:
    """``table`` (one file's batch) with the log's unified schema: partition keys as columns, columns other files
    have as nulls, in the schema's order and types."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
        elif field.name in keys:
            column = pa.array([keys[field.name]] * table.num_rows)
        else:
            column = pa.nulls(table.num_rows, field.type)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.table(columns, schema=schema)


def log_files(path: str | Path) -> list[str]:
    """The Parquet files a log at ``path`` is read from (one file, or a directory's files in sorted order)."""
    return sorted(_open_dataset(_existing(path)).files)


def count_log_rows(path: str | Path) -> int:
    """The number of rows of the log at ``path``, from the Parquet footers (no data is read): the
    total of a progress bar over a streamed log."""
    root = _existing(path)
    try:
        return _open_dataset(root).count_rows()
    except (pa.ArrowException, OSError) as exc:
        raise UnitargetError(f"cannot read impression log {str(root)!r}: {exc}") from exc


def _existing(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; a ``UnitargetError`` naming it when there is nothing there."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UnitargetError(f"impression log not found: {str(root)!r} does not exist")
    return root


def _open_dataset(root: Path) -> ds.FileSystemDataset:
    """Discover the files under ``root`` and unify their schemas (hive partition keys included)."""
    try:
        dataset = ds.dataset(root, format="parquet", partitioning="hive")
    except (pa.ArrowException, OSError) as exc:
        message = f"{str(root)!r} is not a Parquet file or a directory of Parquet files: {exc}"
        raise UnitargetError(message) from exc
    if not dataset.files:
        raise UnitargetError(f"impression log {str(root)!r} is an empty directory: no Parquet files found")
    if len(dataset.files) == 1:
        return dataset
    # Discovery inspects only the first file; read every footer so that a non-Parquet file is named
    # and a column present only in later files is not silently dropped.
    schemas = [dataset.schema]
    for fragment in dataset.get_fragments():
        try:
            schemas.append(fragment.physical_schema)
        except (pa.ArrowException, OSError) as exc:
            raise UnitargetError(f"{fragment.path!r} in {str(root)!r} is not a Parquet file: {exc}") from exc
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowException, TypeError) as exc:
        raise UnitargetError(f"files under {str(root)!r} have incompatible schemas: {exc}") from exc
    return ds.dataset(root, schema=schema, format="parquet", partitioning="hive")


# ---------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------


#: What ``atomic_output``'s temporary names carry before the target's suffix: ``.model.k2j4x.tmp.pt``.
_TMP_MARK = ".tmp"


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    For writers that want a file name (``torch.save``, ``savefig``, ``pq.write_table``). The
    temporary name keeps the target's suffix so that format sniffing by extension still works.

    >>> with atomic_output("model.pt") as tmp:   # doctest: +SKIP
    ...     torch.save(state, tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{target.stem}.", f"{_TMP_MARK}{target.suffix}"
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise UnitargetError(f"nothing was written to the temporary file for {str(target)!r}")
        _fsync_file(tmp)
        os.chmod(tmp, _file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def remove_temporary_files(directory: str | Path) -> list[Path]:
    """Delete the temporary files ``atomic_output`` left in ``directory`` when its process was killed mid-write
    (SIGKILL, power loss: no ``except`` ran); return them. Only for a directory one process writes, such as a run's
    staging directory being resumed: a concurrent writer's temporary file would go too."""
    found = [p for p in Path(directory).glob(f".*{_TMP_MARK}*") if p.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, sorted keys, trailing newline) atomically.

    NaN and ±infinity (which are not JSON) are written as ``null``; numpy scalars and arrays are
    converted to Python numbers and lists. The object is serialised before the file is touched, so
    an unserialisable object leaves any existing file as it was.
    """
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")


def atomic_write_parquet(table: pa.Table, path: str | Path, **kwargs: Any) -> None:
    """Write ``table`` to a Parquet file atomically; ``kwargs`` go to ``pyarrow.parquet.write_table``."""
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def publish_directory(staging: Path, out: Path) -> None:
    """Move a finished ``staging`` directory to ``out``; a previous ``out`` is removed only after.

    Two renames: the old directory aside, the new one into place. A crash between them leaves the
    old one beside ``out`` as ``.<name>.previous``, never a half-written ``out``.
    """
    previous = out.parent / f".{out.name}.previous"
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        os.replace(out, previous)
    os.replace(staging, out)
    shutil.rmtree(previous, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    """Recursively turn ``obj`` into plain JSON values: non-finite floats -> None, numpy -> Python."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, Mapping):
        return {_json_key(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _json_key(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(target: Path) -> int:
    """Permissions for the new file: the replaced file's, else what ``open()`` would give (0o666 & ~umask).

    ``mkstemp`` creates files with mode 0o600, which would make reports unreadable to others.
    """
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask
