"""Open Bandit Dataset (the 60,000-impression sample inside the ``obp`` wheel) as a contract log.

ZOZOTOWN showed fashion items in three positions, chosen either uniformly at random or by
Bernoulli Thompson sampling, in three campaigns (``all``, ``men``, ``women``), for seven days of
November 2019. The uniform-random log is the one off-policy evaluation scores policies on, so it
becomes ``ads``: the default model's ad head learns from both sources, so the head scored on
that log uses every impression. Thompson sampling becomes ``promotions``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.datasets.archive import read_csv, zip_members
from unitarget.datasets.fetch import PinnedFile, check_sha256
from unitarget.datasets.open_bandit_card import CARD, CampaignLog, findings
from unitarget.datasets.output import write_dataset
from unitarget.datasets.summary import Summary, render_readme, summarise
from unitarget.errors import UnitargetError

__all__ = ["CAMPAIGNS", "OPEN_BANDIT", "POLICY_SOURCES", "convert_open_bandit", "open_bandit_log"]

OPEN_BANDIT: Final = PinnedFile(
    name="obp", version="0.4.1", filename="obp-0.4.1-py3-none-any.whl",
    sha256="87dec9caf4283c25ab13036532e0a24566f1c7bdcad1653a8ded43b2f5ef8208", licence="Apache-2.0",
)
#: logging policy (folder name) -> contract source
POLICY_SOURCES: Final = {"random": contract.ADS, "bts": contract.PROMOTIONS}
CAMPAIGNS: Final = ("all", "men", "women")
USER_FEATURES: Final = tuple(f"user_feature_{i}" for i in range(4))
ITEM_CATEGORIES: Final = tuple(f"item_feature_{i}" for i in range(1, 4))
#: the policy whose item_context.csv supplies the item features of both policies' rows
ITEM_CONTEXT_POLICY: Final = "random"
_ROOT = "obp/dataset/obd"
_AFFINITY = "user-item_affinity_"
_TYPES: Final = {"timestamp": pa.timestamp("us", tz="UTC"), "item_id": pa.int64(), "position": pa.int64(),
                 "click": pa.int8(), "propensity_score": pa.float64(),
                 **{name: pa.string() for name in (*USER_FEATURES, *ITEM_CATEGORIES)}}


def convert_open_bandit(package: Path, out: Path, *, expected_sha256: str = OPEN_BANDIT.sha256) -> Summary:
    """Check the wheel's hash, convert all six logs and write ``out/impressions.parquet`` and its README.

    ``expected_sha256`` defaults to the pinned release; tests pass the hash of their slice.
    """
    package = Path(package)
    digest = check_sha256(package, expected_sha256)
    table, findings = open_bandit_log(package)
    summary = summarise(table, package, digest, findings=findings, out=Path(out))
    write_dataset(Path(out), table, render_readme(CARD, OPEN_BANDIT, summary))
    return summary


def open_bandit_log(package: Path) -> tuple[pa.Table, dict[str, str]]:
    """(contract log of every policy and campaign, what the checks on the data found) from the wheel."""
    names = [_member(policy, campaign, file) for policy in POLICY_SOURCES for campaign in CAMPAIGNS
             for file in (f"{campaign}.csv", "item_context.csv")]
    members = zip_members(package, names)
    logs: list[CampaignLog] = []
    items: dict[str, dict[str, pa.Table]] = {}
    for campaign in CAMPAIGNS:
        items[campaign] = {policy: _items(members, policy, campaign) for policy in POLICY_SOURCES}
        used = items[campaign][ITEM_CONTEXT_POLICY]
        for policy in POLICY_SOURCES:
            origin = _member(policy, campaign, f"{campaign}.csv")
            raw = read_csv(members[origin], origin, _TYPES)
            affinity = _affinity(raw, used.num_rows, origin)
            logs.append(CampaignLog(policy, campaign, raw, affinity, _campaign_log(raw, policy, campaign, affinity, used)))
    table = pa.concat_tables([log.converted for log in logs])
    return table, findings(logs, items, ITEM_CONTEXT_POLICY)


def _member(policy: str, campaign: str, file: str) -> str:
    return f"{_ROOT}/{policy}/{campaign}/{file}"


def _items(members: dict[str, bytes], policy: str, campaign: str) -> pa.Table:
    """A campaign's item_context.csv, checked to list items 0..n-1 in order (row i is item i)."""
    origin = _member(policy, campaign, "item_context.csv")
    items = read_csv(members[origin], origin, _TYPES)
    if items.column("item_id").to_pylist() != list(range(items.num_rows)):
        raise UnitargetError(f"{origin}: item_id is not 0..{items.num_rows - 1} in order")
    return items


def _affinity(raw: pa.Table, n_items: int, origin: str) -> np.ndarray:
    """(rows, items) user-item affinity: column ``user-item_affinity_k`` is item k's."""
    names = [f"{_AFFINITY}{k}" for k in range(n_items)]
    missing = [n for n in names if n not in raw.column_names]
    if missing:
        raise UnitargetError(f"{origin}: missing column {missing[0]!r} for the campaign's {n_items} items")
    return np.column_stack([raw.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names])


def _campaign_log(raw: pa.Table, policy: str, campaign: str, affinity: np.ndarray, items: pa.Table) -> pa.Table:
    """One policy's log of one campaign in contract columns, extras after them."""
    n = raw.num_rows
    item = raw.column("item_id")
    if pc.any(pc.or_(pc.less(item, 0), pc.greater_equal(item, items.num_rows))).as_py():
        raise UnitargetError(f"{_member(policy, campaign, campaign + '.csv')}: an item_id outside item_context.csv")
    row = raw.column("").cast(pa.string())
    item_text = item.cast(pa.string())
    shows = np.array([f"{campaign}/item-{k}" for k in range(items.num_rows)], dtype=object)
    columns = {
        contract.IMPRESSION_ID: pc.binary_join_element_wise(f"{policy}/{campaign}", row, "/"),
        contract.TS: raw.column("timestamp"),
        contract.SOURCE: pa.array([POLICY_SOURCES[policy]] * n, pa.string()),
        contract.USER_ID: _profile_keys(raw),
        contract.SHOW_ID: pc.binary_join_element_wise(f"{campaign}/item", item_text, "-"),
        contract.REQUIRED_LABEL: raw.column("click"),
        "propensity": raw.column("propensity_score"),
        "campaign_id": pa.array([campaign] * n, pa.string()),
        "slot": raw.column("position").cast(pa.string()),
        "user_history_shows": _history(affinity, shows),
        **{name: raw.column(name) for name in USER_FEATURES},
        **{name: items.column(name).take(item) for name in ("item_feature_0", *ITEM_CATEGORIES)},
    }
    return pa.table(columns)


def _profile_keys(raw: pa.Table) -> pa.Array:
    """``user_id``: a stable hash of the four hashed user features (a profile key, not a person)."""
    joined = pc.binary_join_element_wise(*(raw.column(n) for n in USER_FEATURES), "\x1f").combine_chunks()
    encoded = joined.dictionary_encode()
    keys = [f"profile-{hashlib.sha256(v.encode()).hexdigest()[:16]}" for v in encoded.dictionary.to_pylist()]
    return pa.array(keys, pa.string()).take(encoded.indices)


def _history(affinity: np.ndarray, shows: np.ndarray) -> pa.Array:
    """``user_history_shows``: items with positive affinity, most affine first (ties by item id)."""
    order = np.argsort(-affinity, axis=1, kind="stable")
    keep = np.take_along_axis(affinity, order, axis=1) > 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    values = pa.array(shows[order[keep]].tolist(), pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)
