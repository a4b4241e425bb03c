"""unitarget.iso8601 on its own: the calendar arithmetic against the standard library."""

import datetime as dt

import numpy as np
import pyarrow as pa

from unitarget.iso8601 import days_from_civil, parse_iso8601


def test_days_from_civil_matches_the_standard_library():
    dates = [dt.date(1, 1, 1) + dt.timedelta(days=int(d)) for d in np.linspace(0, 3_652_058, 5_000)]
    year, month, day = (np.array([getattr(d, f) for d in dates]) for f in ("year", "month", "day"))
    epoch = dt.date(1970, 1, 1).toordinal()
    assert days_from_civil(year, month, day).tolist() == [d.toordinal() - epoch for d in dates]


def test_parse_iso8601_instants_and_rejections():
    strings = ["2026-01-05", "2026-01-05T12:30:15.25Z", "2026-01-05 12:30+02:00", "2024-02-29T00:00:00-0130",
               "2026-02-29", "2026-01-05T24:00", "not a date", None]
    micros, ok = parse_iso8601(pa.chunked_array([pa.array(strings)]))
    assert ok.tolist() == [True, True, True, True, False, False, False, False]
    expected = [dt.datetime.fromisoformat(s.replace("-0130", "-01:30")) for s in strings[:4]]
    expected = [(e if e.tzinfo else e.replace(tzinfo=dt.UTC)).timestamp() * 1_000_000 for e in expected]
    assert micros[:4].tolist() == [int(e) for e in expected]
    assert micros[4:].tolist() == [0, 0, 0, 0]
