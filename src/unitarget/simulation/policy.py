"""Serving: budget pacing, and the allocation of each time slice's opportunities to creatives.

An arm supplies one number per (opportunity, candidate): its *rank*, the value it expects per unit
of cost (scorers.py). Serving is the same for every arm:

- **Pacing (even delivery).** Budgets are tracked in impressions, ``floor(budget / price)``, so
  spend can never exceed a budget. At the start of each day a running campaign's daily target is
  ``remaining impressions / days left in its flight``; by the end of hour h it may have served
  ``floor(target * share(h))`` today, where share(h) is the cumulative share of the day's traffic
  by the end of hour h (``vocab.HOUR_TRAFFIC``). So no campaign spends its budget in the first
  hours, and what a slow day leaves is spread over the days left.
- **Allocation.** Each slice (one hour) is cleared in rounds: every unserved opportunity proposes
  to its best-ranked candidate whose campaign still has capacity in the slice; each campaign
  accepts its best-ranked proposals up to its capacity; the rejected propose to their next
  candidate. Targeting thus decides both which campaign an opportunity gets and which
  opportunities a budget-limited campaign buys. Opportunities left over go unfilled (another
  advertiser's ad in a real system).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitarget.simulation.market import HOURS, Marketplace
from unitarget.synth import vocab

#: Cumulative share of a day's traffic by the end of each hour: the pacing curve.
PACING_CURVE = np.cumsum(vocab.shares(vocab.HOUR_TRAFFIC))


@dataclass(frozen=True)
class Served:
    """What an arm did with each opportunity of the stream (row for row)."""

    creative: np.ndarray  # (N,) int64 creative served, -1 where the opportunity went unfilled
    campaign: np.ndarray  # (N,) int64 its campaign, -1 where unfilled
    cost: np.ndarray  # (N,) float64 money charged: the campaign's price per impression, 0 where unfilled

    @property
    def filled(self) -> np.ndarray:
        """(N,) bool: True where the opportunity was served a creative."""
        return self.creative >= 0


def serve(market: Marketplace, rank: np.ndarray) -> Served:
    """Run one arm over the whole stream: pacing per campaign, allocation per hour.

    ``rank`` is (N, K) aligned with ``market.opportunities.candidates``; higher is better and
    ``-inf`` is never served. The loop runs over days and hours (168 slices a week), never over
    opportunities.
    """
    opp, camp = market.opportunities, market.campaigns
    if rank.shape != opp.candidates.shape:
        raise ValueError(f"rank has shape {rank.shape}, candidates {opp.candidates.shape}")
    has = opp.candidates >= 0
    candidate_campaign = np.where(has, camp.creative_campaign[np.maximum(opp.candidates, 0)], -1)
    rank = np.where(has, rank, -np.inf)
    remaining = np.floor(camp.budget / camp.price).astype(np.int64)  # impressions left to buy
    column = np.full(len(opp), -1, dtype=np.int64)
    for d in range(market.n_days):
        day = market.first_day + d
        running = (camp.start <= day) & (day < camp.end)
        target = np.where(running, remaining / np.maximum(camp.end - day, 1), 0.0)
        served_today = np.zeros(len(camp), dtype=np.int64)
        for hour in range(HOURS):
            lo, hi = opp.slice_offsets[d * HOURS + hour], opp.slice_offsets[d * HOURS + hour + 1]
            paced = np.floor(target * PACING_CURVE[hour] + 1e-9).astype(np.int64) - served_today
            capacity = np.clip(paced, 0, remaining)
            picks = allocate(candidate_campaign[lo:hi], rank[lo:hi], capacity)
            column[lo:hi] = picks
            rows = np.flatnonzero(picks >= 0)
            bought = np.bincount(candidate_campaign[lo + rows, picks[rows]], minlength=len(camp))
            served_today += bought
            remaining -= bought
    rows = np.flatnonzero(column >= 0)
    creative = np.full(len(opp), -1, dtype=np.int64)
    creative[rows] = opp.candidates[rows, column[rows]]
    campaign = np.where(creative >= 0, camp.creative_campaign[np.maximum(creative, 0)], -1)
    cost = np.where(creative >= 0, camp.price[np.maximum(campaign, 0)], 0.0)
    return Served(creative=creative, campaign=campaign, cost=cost)


def allocate(campaign: np.ndarray, rank: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """(n,) the candidate column each opportunity is served, -1 for none.

    ``campaign`` (n, K) is each candidate's campaign (-1: no candidate), ``rank`` (n, K) its rank,
    ``capacity`` (C,) how many impressions each campaign may still buy in this slice. Rounds of
    proposals: at most K, each a few sorts over the proposals (see the module docstring).
    """
    n, k = campaign.shape
    capacity = capacity.copy()
    order = np.argsort(-rank, axis=1, kind="stable")  # (n, K) best candidate first
    campaign_sorted = np.take_along_axis(campaign, order, axis=1)
    rank_sorted = np.take_along_axis(rank, order, axis=1)
    usable = (campaign_sorted >= 0) & np.isfinite(rank_sorted)
    chosen = np.full(n, -1, dtype=np.int64)
    pointer = np.zeros(n, dtype=np.int64)  # first sorted position not yet tried
    open_rows = np.ones(n, dtype=bool)
    positions = np.arange(k)
    for _ in range(k):
        live = usable & (capacity[np.maximum(campaign_sorted, 0)] > 0)
        live &= (positions[None, :] >= pointer[:, None]) & open_rows[:, None]
        rows = np.flatnonzero(live.any(axis=1))
        if len(rows) == 0:
            break
        pos = live[rows].argmax(axis=1)  # first live position: the best candidate with capacity
        wanted, score = campaign_sorted[rows, pos], rank_sorted[rows, pos]
        by = np.lexsort((rows, -score, wanted))  # per campaign, best proposal first
        grouped = wanted[by]
        within = np.arange(len(by)) - np.searchsorted(grouped, grouped, side="left")
        accepted = by[within < capacity[grouped]]
        chosen[rows[accepted]] = order[rows[accepted], pos[accepted]]
        open_rows[rows[accepted]] = False
        capacity -= np.bincount(wanted[accepted], minlength=len(capacity))
        pointer[rows] = pos + 1
    return chosen
