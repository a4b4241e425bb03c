"""Vectorised ISO-8601 / RFC 3339 parsing to UTC microseconds, with no Python loop over rows.

The fields of every string are pulled out with one regex, checked against the calendar and
combined with civil-calendar arithmetic in numpy. This module only says which strings parse and
to what instant; what an unparsable one means for a log is the caller's business
(``unitarget.validation`` names the offending rows of ``ts``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["days_from_civil", "parse_iso8601"]

# ISO-8601 / RFC 3339: date, optional time (minutes, seconds, up to 9 fraction digits), optional zone.
_ISO_8601: Final = (
    r"^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[Tt ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?)?)?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<off_hour>\d{2})(?::?(?P<off_minute>\d{2}))?)?$"
)
_DAYS_IN_MONTH: Final = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def parse_iso8601(strings: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Parse ISO-8601 strings to (microseconds since the epoch, UTC; ok mask), both shape (N,).

    Fields are pulled out with one regex, checked against the calendar (month 1-12, day within the
    month, hour < 24, ...), then combined: days_from_civil(y, m, d) * 86400 + h*3600 + m*60 + s
    - zone offset. Nulls and malformed strings get ok = False and 0 microseconds.
    """
    strings = pc.utf8_trim_whitespace(strings.cast(pa.large_string()))
    parts = pc.extract_regex(strings, _ISO_8601)

    def field(name: str, pad_right: bool = False) -> np.ndarray:
        text = pc.struct_field(parts, name)
        # Missing optional parts are "" in the match: "" -> "0"; fractions padded to nanoseconds.
        text = pc.utf8_rpad(text, 9, "0") if pad_right else pc.utf8_lpad(text, 1, "0")
        return np.asarray(pc.fill_null(text, "0").cast(pa.int64()).to_numpy(zero_copy_only=False))

    year, month, day = field("year"), field("month"), field("day")
    hour, minute, second, nanos = field("hour"), field("minute"), field("second"), field("fraction", True)
    off_hour, off_minute = field("off_hour"), field("off_minute")
    sign = np.where(_true(pc.equal(pc.struct_field(parts, "sign"), "-")), -1, 1)

    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + (leap & (month == 2))
    ok = _true(pc.is_valid(parts)) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    ok &= (hour < 24) & (minute < 60) & (second < 60) & (off_hour < 24) & (off_minute < 60)

    seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
    seconds -= sign * (off_hour * 3_600 + off_minute * 60)
    micros = np.where(ok, seconds * 1_000_000 + nanos // 1_000, 0)
    return micros.astype(np.int64), ok


def days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorised."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    year_of_era = y - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _true(condition: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean pyarrow result -> numpy mask over rows; null (no match) counts as False."""
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)
