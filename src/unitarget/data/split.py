"""Temporal splits by ``ts``: older days train, newer days validate or test (paper, section 4.1)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.errors import UnitargetError

_MICROS_PER_DAY = 86_400 * 1_000_000


def _micros(table: pa.Table) -> np.ndarray:
    return table.column(contract.TS).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


def split_newest_days(table: pa.Table, days: float, *, purpose: str) -> tuple[pa.Table, pa.Table]:
    """(older rows, rows of the newest ``days`` days), cutting at a UTC day boundary.

    The cut is ``end - days`` where ``end`` is midnight after the newest impression, so a 7-day
    split of a day-complete log takes exactly its last 7 calendar days.
    """
    ts = _micros(table)
    end = (ts.max() // _MICROS_PER_DAY + 1) * _MICROS_PER_DAY
    cutoff = end - int(days * _MICROS_PER_DAY)
    newest = ts >= cutoff
    n_new = int(newest.sum())
    if n_new == 0 or n_new == len(ts):
        span = (end - ts.min()) / _MICROS_PER_DAY
        raise UnitargetError(
            f"cannot hold out the newest {days:g} days for {purpose}: the log spans {span:.1f} days "
            f"({n_new} of {len(ts)} rows would be held out); use a longer log or fewer days"
        )
    mask = pa.array(newest)
    return table.filter(pc.invert(mask)), table.filter(mask)


def time_range(table: pa.Table) -> tuple[str, str]:
    """ISO strings of the oldest and newest impression, for manifests and reports."""
    ts = table.column(contract.TS)
    return pc.min(ts).as_py().isoformat(), pc.max(ts).as_py().isoformat()
