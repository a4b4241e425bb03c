"""Temporal splits by ``ts``: older days train, newer days validate or test (paper, section 4.1).

**Short logs.** The configured window (``train.valid_days``, ``evaluation.test_days``; 7 days
each by default) is used whenever it leaves at least half of the log's time span before the cut.
On a shorter log (a one-week public sample, a pilot) that window would hold out most or all of
the data, so the window shrinks to ``SHORT_LOG_SHARE`` of the span, but never below one day, so
every source that serves daily keeps a day's worth of rows on each side. The split says so
(``TimeSplit.note``; logged as a warning on the ``unitarget`` logger, recorded in
``training.json``). A log shorter than two days, or one whose cut leaves a source with no rows on
one side, has no honest split and gets one error naming the span and the settings to change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.errors import UnitargetError

_MICROS_PER_DAY = 86_400 * 1_000_000
#: The held-out window may take at most this share of the log's span as configured.
MAX_HOLDOUT_SHARE = 0.5
#: On a log too short for the configured window, the window is this share of the span...
SHORT_LOG_SHARE = 0.2
#: ...but never shorter than this many days.
MIN_HOLDOUT_DAYS = 1.0

log = logging.getLogger("unitarget")


def micros(table: pa.Table) -> np.ndarray:
    """(N,) ``ts`` as int64 microseconds since the epoch (UTC)."""
    return table.column(contract.TS).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


def holdout_days(span_days: float, configured: float, *, purpose: str, setting: str) -> tuple[float, str | None]:
    """The window to hold out of a log spanning ``span_days``: the configured one, or the
    short-log rule's (with the note that says so)."""
    if configured <= MAX_HOLDOUT_SHARE * span_days:
        return configured, None
    days = max(SHORT_LOG_SHARE * span_days, MIN_HOLDOUT_DAYS)
    if days > MAX_HOLDOUT_SHARE * span_days:
        raise UnitargetError(
            f"the log spans {span_days:.2f} days, too short to hold out a {purpose} window of at least "
            f"{MIN_HOLDOUT_DAYS:g} day that leaves as much before it; use a log of at least "
            f"{MIN_HOLDOUT_DAYS / MAX_HOLDOUT_SHARE:g} days, or set {setting} (now {configured:g}) to a "
            f"fraction of a day and accept a window with less than a day's traffic"
        )
    days = round(days, 3)
    note = (f"the log spans {span_days:.2f} days, too short for {setting} = {configured:g}: holding out the "
            f"newest {days:g} days for {purpose} ({SHORT_LOG_SHARE:.0%} of the span, at least "
            f"{MIN_HOLDOUT_DAYS:g} day); set {setting} to choose")
    return days, note


@dataclass(frozen=True)
class Cut:
    """Where the newest window of a log starts, decided from its oldest and newest impression only,
    so a log read chunk by chunk is cut exactly where the whole table would be."""

    at: int  # microseconds since the epoch: rows at or after it are the newest
    days: float  # the window used
    configured_days: float
    span_days: float
    note: str | None

    @classmethod
    def plan(cls, oldest: int, newest: int, days: float, *, purpose: str, setting: str) -> "Cut":
        """``days`` before the midnight after ``newest`` (microseconds), or the short-log rule's window of a log
        spanning whole UTC days from the midnight before ``oldest``."""
        end = (newest // _MICROS_PER_DAY + 1) * _MICROS_PER_DAY
        span = (end - oldest // _MICROS_PER_DAY * _MICROS_PER_DAY) / _MICROS_PER_DAY
        used, note = holdout_days(span, days, purpose=purpose, setting=setting)
        return cls(end - int(used * _MICROS_PER_DAY), used, days, span, note)

    def newest(self, table: pa.Table) -> np.ndarray:
        """(N,) True for the rows of ``table`` in the newest window."""
        return micros(table) >= self.at

    def check(self, held_out: int, rows: int, *, purpose: str, setting: str) -> None:
        """Refuse a cut that holds out none or all of the ``rows``."""
        if held_out == 0 or held_out == rows:
            raise UnitargetError(
                f"cannot hold out the newest {self.days:g} days for {purpose}: the log spans {self.span_days:.1f} "
                f"days ({held_out} of {rows} rows would be held out); use a longer log or change {setting}"
            )

    def check_sources(self, sides: dict[str, tuple[int, int]], setting: str) -> None:
        """A shortened window must still leave every source rows on both sides of the cut (``sides``: source ->
        (rows before, rows in the window))."""
        if self.note is None:
            return
        for source, (before, held) in sorted(sides.items()):
            if before == 0 or held == 0:
                side = "before" if before == 0 else "in"
                raise UnitargetError(
                    f"the log spans {self.span_days:.2f} days and source {source!r} has no rows {side} the "
                    f"newest {self.days:g} days, so no honest split exists for it; use a longer log, or set "
                    f"{setting} (now {self.configured_days:g})"
                )

    def split(self, table: pa.Table, newest: np.ndarray) -> "TimeSplit":
        """``table``'s rows before and in the window (``newest``: ``self.newest(table)``)."""
        mask = pa.array(newest)
        return TimeSplit(table.filter(pc.invert(mask)), table.filter(mask), self)

    def to_dict(self) -> dict[str, object]:
        """The window, for a training record or a report (as ``TimeSplit.to_dict``)."""
        return {"days": self.days, "configured_days": self.configured_days, "span_days": round(self.span_days, 4),
                "note": self.note}


@dataclass(frozen=True)
class TimeSplit:
    """The older rows, the newest rows, and the cut between them."""

    older: pa.Table
    newest: pa.Table
    cut: Cut

    @property
    def days(self) -> float:
        """The window used."""
        return self.cut.days

    @property
    def configured_days(self) -> float:
        """The window configured."""
        return self.cut.configured_days

    @property
    def note(self) -> str | None:
        """Set when the short-log rule replaced the configured window."""
        return self.cut.note

    def to_dict(self) -> dict[str, object]:
        """The window, for a training record or a report."""
        return self.cut.to_dict()


def split_newest_days(table: pa.Table, days: float, *, purpose: str, setting: str | None = None) -> TimeSplit:
    """Split off the newest ``days`` days (or the short-log rule's window), cutting ``days``
    before midnight after the newest impression, so a 7-day split of a day-complete log takes
    exactly its last 7 calendar days. ``setting`` names the option a user changes (for messages)."""
    setting = setting or f"the {purpose} days"
    ts = micros(table)
    cut = Cut.plan(int(ts.min()), int(ts.max()), days, purpose=purpose, setting=setting)
    newest = ts >= cut.at
    cut.check(int(newest.sum()), len(ts), purpose=purpose, setting=setting)
    if cut.note is not None:
        cut.check_sources(source_sides(table, newest), setting)
        log.warning(cut.note)
    return cut.split(table, newest)


def source_sides(table: pa.Table, newest: np.ndarray) -> dict[str, tuple[int, int]]:
    """Source -> (rows before the cut, rows in the window) of ``table``."""
    sources = table.column(contract.SOURCE).cast(pa.string()).to_numpy(zero_copy_only=False)
    names, index = np.unique(sources, return_inverse=True)
    held = np.bincount(index, weights=newest, minlength=len(names)).astype(int)
    total = np.bincount(index, minlength=len(names))
    return {str(n): (int(t - h), int(h)) for n, t, h in zip(names, total, held)}


def time_range(table: pa.Table) -> tuple[str, str]:
    """ISO strings of the oldest and newest impression, for manifests and reports."""
    ts = table.column(contract.TS)
    return pc.min(ts).as_py().isoformat(), pc.max(ts).as_py().isoformat()
