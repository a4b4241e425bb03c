"""Counterfactual candidate rows for off-policy evaluation, built from the contract alone.

A target policy chooses, at each logged impression, among the *candidates* of that impression: every
show of the same ``campaign_id`` in the log (every show of the log, when the column is absent). To
score a candidate the model needs a row that looks like an impression: the impression's own user
and context columns (and its ``slot``, the position it was shown at), with the candidate's content
and creative columns, taken from the candidate's most recent row in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.contract import FeatureColumn, Group
from unitarget.data.vocabulary import as_string
from unitarget.errors import UnitargetError

__all__ = ["NO_CAMPAIGN", "CandidateSets", "campaign_keys", "candidate_sets", "counterfactual_rows", "item_columns"]

#: The key of the one candidate set of a log without ``campaign_id`` (and of null campaigns).
NO_CAMPAIGN = ""


def item_columns(columns: Iterable[FeatureColumn]) -> tuple[str, ...]:
    """The columns that describe the item shown rather than the impression: ``show_id`` and every
    content and creative column except ``slot`` (a position belongs to the impression: the policy
    chooses what to show there, not where)."""
    names = [c.name for c in columns if c.group in (Group.CONTENT, Group.CREATIVE) and c.name != contract.SLOT]
    return (contract.SHOW_ID, *dict.fromkeys(n for n in names if n != contract.SHOW_ID))


@dataclass(frozen=True)
class CandidateSets:
    """Each campaign's candidates and where each impression stands among them: what a policy over
    the candidates needs to be compared with the logged action."""

    #: campaign key -> its candidates' item columns, one row per show, shows in sorted order
    items: dict[str, pa.Table]
    #: (N,) campaign key of each impression
    campaign: np.ndarray
    #: (N,) index of the logged show among its campaign's candidates
    logged: np.ndarray

    def impressions_of(self, campaign: str) -> np.ndarray:
        """Positions of the impressions of ``campaign`` in the log, in log order."""
        return np.flatnonzero(self.campaign == campaign)


def candidate_sets(log: pa.Table, columns: Iterable[str]) -> CandidateSets:
    """The candidates of every campaign of ``log`` (one source's impressions), each show described
    by ``columns`` (see ``item_columns``; those absent from the log are left out) as in its most
    recent row (by ``ts``; the later row on a tie)."""
    if log.num_rows == 0:
        raise UnitargetError("no impressions to build candidates from")
    wanted = [c for c in dict.fromkeys(columns) if c in log.column_names]
    campaign = campaign_keys(log)
    shows = as_string(log.column(contract.SHOW_ID)).to_numpy(zero_copy_only=False).astype(str)
    ts = log.column(contract.TS).cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = np.lexsort((np.arange(log.num_rows), ts, shows, campaign))  # last of each (campaign, show) = newest
    keys = campaign[order], shows[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (keys[0][1:] != keys[0][:-1]) | (keys[1][1:] != keys[1][:-1])
    newest = order[last]  # sorted by campaign, then show
    items, logged = {}, np.empty(log.num_rows, dtype=np.int64)
    for key in np.unique(campaign):
        rows = newest[campaign[newest] == key]
        items[str(key)] = log.select(wanted).take(pa.array(rows))
        mine = np.flatnonzero(campaign == key)
        logged[mine] = np.searchsorted(shows[rows], shows[mine])
    return CandidateSets(items, campaign, logged)


def counterfactual_rows(impressions: pa.Table, candidates: pa.Table) -> pa.Table:
    """``len(impressions) × len(candidates)`` rows, impression-major: impression i's row with each
    candidate's columns in place of its own (the columns of ``candidates``), every other column
    (user, context, ``slot``, ``ts``, ``source``) kept from the impression."""
    n, k = impressions.num_rows, candidates.num_rows
    repeat = pa.array(np.repeat(np.arange(n), k))
    tile = pa.array(np.tile(np.arange(k), n))
    replaced = set(candidates.column_names)
    columns, fields = [], []
    for field in impressions.schema:
        source = candidates if field.name in replaced else impressions
        columns.append(source.column(field.name).take(tile if field.name in replaced else repeat))
        fields.append(source.schema.field(field.name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def campaign_keys(log: pa.Table) -> np.ndarray:
    """(N,) the candidate-set key of each impression: its ``campaign_id`` (``NO_CAMPAIGN`` when null or
    when the log has no such column, so every show of the log is a candidate)."""
    if contract.CAMPAIGN_ID not in log.column_names:
        return np.full(log.num_rows, NO_CAMPAIGN, dtype=object).astype(str)
    values = pc.fill_null(as_string(log.column(contract.CAMPAIGN_ID)), NO_CAMPAIGN)
    return values.to_numpy(zero_copy_only=False).astype(str)
