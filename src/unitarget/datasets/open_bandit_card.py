"""What the Open Bandit README says: the mapping, what is synthetic, and checks run on the data.

The checks are computed every time the adapter runs, so the README states what this file holds
(item_context differences between the policies, propensities, affinities), not what it held once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget.datasets.summary import DatasetCard

__all__ = ["CARD", "CampaignLog", "findings"]


@dataclass(frozen=True)
class CampaignLog:
    """One policy's CSV of one campaign: as read, its affinity matrix and its converted rows (for the checks)."""

    policy: str
    campaign: str
    raw: pa.Table
    affinity: np.ndarray
    converted: pa.Table


CARD: Final = DatasetCard(
    title="Open Bandit Dataset (obp sample) as an impression log",
    description=(
        "ZOZOTOWN fashion-item recommendations (Saito et al., *Open Bandit Dataset and Pipeline*, "
        "arXiv:2008.07146): the 10,000-row sample per logging policy and campaign that ships in the `obp` "
        "wheel, all six files (2 policies × 3 campaigns). Each row is one item shown in one of three positions "
        "and whether it was clicked. These are fashion items, not podcasts: the log tests the pipeline on real "
        "impressions with a known logging policy, not podcast behaviour."
    ),
    mapping=(
        ("impression_id", "`<policy>/<campaign>/<row>`: the CSV's unnamed index, unique per file"),
        ("ts", "`timestamp` (UTC in the file), microseconds"),
        ("source", "logging policy: uniform `random` → `ads`, Bernoulli Thompson sampling `bts` → `promotions`. "
                   "The default model's ad head learns from both sources, so the head scored on the uniform-random "
                   "log (the one off-policy evaluation uses) learns from every impression"),
        ("user_id", "`profile-<sha256 of user_feature_0..3>`: the data has no user id, so this is a *profile key* "
                    "(every user with the same four hashed features shares it), not a person"),
        ("show_id", "`<campaign>/item-<item_id>`: item ids are per campaign (item 3 of `men` is not item 3 of `all`)"),
        ("stream", "`click`, the only outcome in the data"),
        ("propensity", "`propensity_score` (float64): the logging policy's probability of the shown item at that "
                       "position and impression, for off-policy evaluation; the default configuration ignores it"),
        ("campaign_id", "campaign (`all`, `men`, `women`)"),
        ("slot", "`position` as a string (1 left, 2 centre, 3 right)"),
        ("user_history_shows", "the campaign's items with positive `user-item_affinity_<item>` (affinity is "
                               "\"induced by the number of past clicks\" of the user on the item, per the dataset's "
                               "README), most affine first, ties by item id. Past clicks, not streams"),
        ("user_feature_0..3", "kept as extra string columns under their own names (hashed categoricals; the "
                              "default configuration ignores them). Not mapped to `user_country`/`user_age_bucket`: "
                              "their meaning is not published"),
        ("item_feature_0..3", "from the campaign's `item_context.csv` of the `random` folder, for both policies' "
                              "rows, as extras under their own names (`item_feature_0` float64, the others hashed "
                              "strings). Not mapped to `show_genre`/`show_topics`: what they encode is not published"),
    ),
    synthetic=(
        "`user_id` groups impressions by feature profile; two people with equal features are one `user_id`.",
        "The `stream` label is a click on a fashion item; there is no downstream outcome, so `click`, `like` and "
        "`follow` columns are absent (no task learns from them).",
        "The two sources are two logging policies on the same surface, not two channels: which is `ads` is a "
        "choice (see `source`).",
        "`user-item_affinity_*` columns are folded into `user_history_shows` and not kept (their number differs "
        "per campaign).",
    ),
    notes=(
        "The log spans exactly 7 calendar days, the default `train.valid_days`; the default split holds out the "
        "whole log unless the split has a rule for short logs.",
    ),
)


def findings(logs: list[CampaignLog], items: dict[str, dict[str, pa.Table]], used_policy: str) -> dict[str, str]:
    """Checks on the raw files, each stated in the README: what differs, what repeats, what propensity means."""
    found = {"item_context.csv of the two policies": _item_context(items, used_policy)}
    for log in logs:
        if log.policy == "random":
            values = sorted(set(pc.unique(log.raw.column("propensity_score")).to_pylist()))
            n_items = log.affinity.shape[1]
            found[f"propensity, random/{log.campaign}"] = (
                f"{', '.join(f'{v:.6g}' for v in values)} for every row (1/{n_items} items = {1 / n_items:.6g})")
        else:
            low, high = pc.min_max(log.raw.column("propensity_score")).values()
            found[f"propensity, bts/{log.campaign}"] = f"from {low.as_py():.3g} to {high.as_py():.3g}"
    affinity = np.concatenate([log.affinity.ravel() for log in logs])
    rows = sum(len(log.affinity) for log in logs)
    positive = sum(int((log.affinity > 0).any(axis=1).sum()) for log in logs)
    shown = sum(int((log.affinity[np.arange(len(log.affinity)), _items_of(log)] > 0).sum()) for log in logs)
    found["user-item affinity"] = (
        f"values are {'whole numbers' if np.all(affinity == np.round(affinity)) else 'not all whole numbers'} "
        f"from {affinity.min():g} to {affinity.max():g}; {positive:,} of {rows:,} impressions have any positive "
        f"affinity (so `user_history_shows` is empty for the rest), {shown:,} of them for the item shown")
    found["rows repeated in every column but the index"] = f"{sum(_repeats(log.raw) for log in logs):,}"
    found["distinct profile keys (user_id)"] = ", ".join(
        f"{log.policy}/{log.campaign} {len(pc.unique(log.converted.column('user_id'))):,}" for log in logs)
    by_source = [set(pc.unique(log.converted.column("user_id")).to_pylist()) for log in logs if log.policy == "random"]
    others = [set(pc.unique(log.converted.column("user_id")).to_pylist()) for log in logs if log.policy != "random"]
    ads, promotions = set().union(*by_source), set().union(*others)
    found["profile keys under both sources"] = f"{len(ads & promotions):,} of {len(ads | promotions):,}"
    return found


def _items_of(log: CampaignLog) -> np.ndarray:
    return log.raw.column("item_id").to_numpy(zero_copy_only=False)


def _repeats(raw: pa.Table) -> int:
    columns = [name for name in raw.column_names if name != ""]
    return raw.num_rows - raw.select(columns).group_by(columns).aggregate([]).num_rows


def _item_context(items: dict[str, dict[str, pa.Table]], used_policy: str) -> str:
    """Compare each campaign's item features between the two policies' files, over all campaigns."""
    n_items = numbers_equal = strings_equal = strings = 0
    same_groups = True
    for by_policy in items.values():
        first, second = by_policy.values()
        n_items += first.num_rows
        numbers_equal += int(pc.sum(pc.equal(first.column("item_feature_0"), second.column("item_feature_0"))).as_py())
        for name in ("item_feature_1", "item_feature_2", "item_feature_3"):
            a, b = first.column(name).to_pylist(), second.column(name).to_pylist()
            strings += len(a)
            strings_equal += sum(x == y for x, y in zip(a, b))
            same_groups &= len(set(zip(a, b))) == len(set(a)) == len(set(b))
    grouping = ("group the items identically (the same categories under other hash strings)" if same_groups
                else "group the items differently")
    return (f"item_feature_0 equal for {numbers_equal} of {n_items} items; item_feature_1..3 equal for "
            f"{strings_equal} of {strings} values but {grouping}. The `{used_policy}` folder's file is used "
            "for both policies' rows")
