"""Contract logs as training reads them: validated whole (``load_log``) or chunk by chunk
(``validated_chunks``, with errors naming rows of the whole log), and cut to the rows of the
sources the tasks learn from (``training_rows``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.config import Config
from unitarget.errors import ContractError, UnitargetError
from unitarget.io import iter_log, read_log
from unitarget.validation import normalise_ts, validate_log


def load_log(data: str | Path | pa.Table, config: Config, *, require_labels: bool = True) -> pa.Table:
    """Read (if a path) and validate a log against the contract before any work is done."""
    table = read_log(data) if isinstance(data, (str, Path)) else data
    return _validated(table, config, require_labels)


def _validated(table: pa.Table, config: Config, require_labels: bool) -> pa.Table:
    validate_log(
        table, sources=config.sources, require_labels=require_labels,
        extra_numeric=[f.name for f in config.features.extra if f.kind.value in ("numeric", "vector")],
        extra_labels=[t.label for t in config.tasks],
    )
    return normalise_ts(table)


def validated_chunks(data: str | Path | pa.Table, config: Config, rows: int, *, require_labels: bool = True,
                     validate: bool = True) -> Iterator[tuple[int, pa.Table]]:
    """(first row, chunk) pairs of the log, each chunk validated (or, with ``validate`` off, for a pass over a log
    validated before, only ts-normalised): a bad row stops the pass with its row number in the whole log, and a log
    without rows is the contract's empty-dataset error once all of it is read."""
    empty = True
    for start, chunk in iter_log(data, rows):
        empty = False
        if not validate:
            yield start, normalise_ts(chunk)
            continue
        try:
            chunk = _validated(chunk, config, require_labels)
        except ContractError as err:
            raise in_log(err, start) from None
        yield start, chunk
    if empty:
        raise ContractError("empty dataset: the impression log has 0 rows", column=None, count=0)


def in_log(err: ContractError, start: int) -> ContractError:
    """``err`` raised on a chunk that starts at row ``start`` of the log, with the log's row numbers."""
    if not err.rows or start == 0:
        return err
    rows = [start + r for r in err.rows]
    message = (f"{err.message} (rows of the chunk that starts at row {start:,}; in the whole log: "
               f"{', '.join(str(r) for r in rows)})")
    return ContractError(message, column=err.column, rows=rows, count=err.count)


def training_rows(table: pa.Table, config: Config, *, required: bool = True) -> pa.Table:
    """The rows of the sources the tasks learn from; with ``required``, a log with none is an error."""
    sources = config.training_sources
    keep = pc.is_in(table.column(contract.SOURCE).cast(pa.string()), value_set=pa.array(sources))
    rows = table.filter(keep)
    if required and rows.num_rows == 0:
        raise UnitargetError(f"the log has no impressions from the sources the tasks learn from: {sources}")
    return rows
