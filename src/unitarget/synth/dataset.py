"""The synthetic log as Arrow tables, a batch of hours at a time, and written to disk in bounded memory.

A batch is a run of consecutive hours of the period (``log.sample_hours``) with at least
``chunk_rows`` impressions; each becomes one table and, on disk, one Parquet row group, and is freed
before the next is drawn. Memory is set by the batch, not by ``n_impressions``. Each hour has its own
random stream, so the rows do not depend on ``chunk_rows``: it only decides how they are grouped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from unitarget.io import atomic_output
from unitarget.synth.log import plan_log, sample_hours
from unitarget.synth.params import WorldParams
from unitarget.synth.table import TableBuilder
from unitarget.synth.world import World

#: Impressions per batch (and Parquet row group): a few hundred MB of temporaries at most.
CHUNK_ROWS = 262_144

#: ``on_rows(done, total)``: impressions written so far, of all; called with ``done == 0`` once the world is drawn.
RowsCallback = Callable[[int, int], None]


def iter_log_tables(world: World, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The world's log as consecutive tables of whole hours, at least ``chunk_rows`` rows each but the last; sorted by
    ts across tables, and the same rows whatever ``chunk_rows``."""
    plan = plan_log(world)
    builder = TableBuilder(world)
    first = 0
    for lo, hi in hour_batches(plan.per_hour, chunk_rows):
        log = sample_hours(world, plan, lo, hi)
        yield builder.build(log, first_row=first, n_rows=world.params.n_impressions)
        first += len(log)


def hour_batches(per_hour: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` hour ranges covering every hour, each with at least ``chunk_rows`` impressions but
    the last; an hour is never split, so that each range's rows come out sorted by ts."""
    batches, lo, rows = [], 0, 0
    for hour, n in enumerate(per_hour.tolist()):
        rows += n
        if rows >= chunk_rows:
            batches.append((lo, hour + 1))
            lo, rows = hour + 1, 0
    if rows or not batches:
        batches.append((lo, len(per_hour)))
    elif lo < len(per_hour):  # empty hours at the end join the last batch
        batches[-1] = (batches[-1][0], len(per_hour))
    return batches


def generate_log(world: World) -> pa.Table:
    """Contract columns plus ``true_<label>`` float64 columns, sorted by ts: the rows ``write_synthetic_dataset``
    writes, in memory (one chunk per batch)."""
    return pa.concat_tables(iter_log_tables(world))


def write_synthetic_dataset(
    out_dir: Path, params: WorldParams, *, on_rows: RowsCallback | None = None, chunk_rows: int = CHUNK_ROWS
) -> Path:
    """Generate a world and its log; write ``out_dir/impressions.parquet`` and ``out_dir/world/``.

    The log is drawn and written a batch at a time (``iter_log_tables``) into a temporary file renamed into
    place at the end, then the world is saved (atomically too): a crash never leaves a partial log, nor
    a new world beside an old log. Returns the Parquet path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = World.generate(params)
    path = out_dir / "impressions.parquet"
    report = on_rows or (lambda done, total: None)
    report(0, params.n_impressions)
    with atomic_output(path) as tmp:
        _write_tables(iter_log_tables(world, chunk_rows), tmp, lambda done: report(done, params.n_impressions))
    world.save(out_dir / "world")
    return path


def _write_tables(tables: Iterator[pa.Table], path: Path, on_rows: Callable[[int], None]) -> None:
    """One zstd Parquet file, a row group per table; the writer opens on the first table's schema."""
    writer: pq.ParquetWriter | None = None
    done = 0
    try:
        for table in tables:
            writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=table.num_rows)
            done += table.num_rows
            on_rows(done)
            del table  # free this batch before the next is drawn
    finally:
        if writer is not None:
            writer.close()
