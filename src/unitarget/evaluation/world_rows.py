"""Rows of a synthetic log read back as the world's index arrays: the inverse of ``synth.table``.

The informed oracle (``evaluation.informed``) recomputes the world's outcome model on logged rows
with some latent effects replaced, so it needs each row as the :class:`Placements` the generator
drew: user, show, creative, surface, device, slot, layout, hour and day as indices. The log holds
them as the strings ``synth.vocab`` writes (``u000012``, ``s00003``, ``cr000007``, "home_shelf" …);
this module parses them back. A row that does not parse, or names an entity the world does not
have, is one clear error: the log was not drawn from that world.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.errors import UnitargetError
from unitarget.synth import World, vocab
from unitarget.synth.placements import Placements

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
#: (column, id prefix) of the id columns parsed back to indices.
_ID_COLUMNS = ((contract.USER_ID, "u"), (contract.SHOW_ID, "s"), ("creative_id", "cr"))
#: The columns ``placements_of`` and ``label_arrays`` read: a log read for them needs no others.
COLUMNS = (contract.TS, contract.SOURCE, contract.USER_ID, contract.SHOW_ID, "creative_id", "surface", "device",
           contract.SLOT, "layout", *contract.LABELS)


def placements_of(world: World, table: pa.Table) -> Placements:
    """The placements of ``table``'s rows (contract columns, ``ts`` as timestamp[us, UTC])."""
    counts = {contract.USER_ID: world.n_users, contract.SHOW_ID: world.n_shows,
              "creative_id": world.campaigns.n_creatives}
    ids = {column: _indices(table, column, prefix, counts[column]) for column, prefix in _ID_COLUMNS}
    start_us = int(world.params.start_datetime.timestamp()) * 1_000_000
    since_start = table.column(contract.TS).cast(pa.int64()).to_numpy() - start_us
    if (since_start < 0).any() or (since_start >= world.params.n_days * _DAY_US).any():
        raise UnitargetError(f"the log has impressions outside the world's {world.params.n_days} days from "
                             f"{world.params.start}: it was not drawn from this world")
    return Placements(
        user=ids[contract.USER_ID], show=ids[contract.SHOW_ID], source=_lookup(table, contract.SOURCE, vocab.SOURCES),
        creative=ids["creative_id"], surface=_lookup(table, "surface", vocab.SURFACES),
        device=_lookup(table, "device", vocab.DEVICES), slot=_lookup(table, contract.SLOT, vocab.SLOTS),
        layout=_lookup(table, "layout", vocab.LAYOUTS), hour=(since_start % _DAY_US) // _HOUR_US,
        day=since_start // _DAY_US,
    )


def label_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """label -> (n,) float64 of ``table``'s rows, 1/0, NaN where null or where the table has no such column."""
    out = {}
    for label in contract.LABELS:
        if label in table.column_names:
            out[label] = table.column(label).cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            out[label] = np.full(table.num_rows, np.nan)
    return out


def _indices(table: pa.Table, column: str, prefix: str, count: int) -> np.ndarray:
    """(n,) int64 entity index of each row's id (``prefix`` + digits), -1 where null."""
    values = table.column(column).cast(pa.string())
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    digits = pc.utf8_slice_codeunits(values, len(prefix))
    well_formed = pc.and_(pc.starts_with(values, prefix), pc.utf8_is_digit(digits))
    if pc.any(pc.invert(pc.fill_null(well_formed, True))).as_py():
        raise UnitargetError(f"column {column!r} holds ids that are not {prefix}<digits>: the log was not drawn "
                             "from a synthetic world")
    index = pc.fill_null(digits, "-1").cast(pa.int64()).to_numpy()
    if (index[present] >= count).any():
        raise UnitargetError(f"column {column!r} names more than the world's {count:,} entities: the log was not "
                             "drawn from this world")
    return np.where(present, index, -1)


def _lookup(table: pa.Table, column: str, strings: tuple[str, ...]) -> np.ndarray:
    """(n,) index of each row's value in ``strings``, -1 where null; a value outside them is an error."""
    values = table.column(column).cast(pa.string())
    index = pc.index_in(values, value_set=pa.array(strings, pa.string()))
    unknown = pc.and_(pc.is_valid(values), pc.is_null(index))
    if pc.any(unknown).as_py():
        raise UnitargetError(f"column {column!r} holds values outside the world's {strings}")
    return pc.fill_null(index, -1).to_numpy().astype(np.int64)
