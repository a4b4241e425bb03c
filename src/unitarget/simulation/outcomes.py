"""Outcomes of served impressions, drawn from the world's truth with common random numbers.

Each opportunity carries four uniforms (click, stream, like, follow) drawn once for the whole
simulation. Whatever creative an arm serves, its labels are drawn down the world's chain
(labels.py) with *those* uniforms:

    click  = u_click < P(click)
    stream = u_stream < P(stream | click)       if click else  u_stream < P(stream | no click)
    follow = u_follow < P(follow | stream)      if stream else u_follow < P(follow | no stream)

so two arms that serve the same creative get the same outcome, and an arm that serves a creative
with a higher probability can only gain a stream where the other had none. Differences between
arms then come from targeting, not from the luck of the draws. The true marginals are kept too:
``expected_streams`` is the noise-free count each arm earned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitarget.simulation.market import Marketplace
from unitarget.simulation.policy import Served
from unitarget.synth import World, vocab
from unitarget.synth.placements import Placements

_CHUNK = 262_144


@dataclass(frozen=True)
class Outcomes:
    """One row per filled opportunity of an arm (``rows`` into the stream, in stream order)."""

    rows: np.ndarray  # (n,) int64 opportunity rows that were filled
    show: np.ndarray  # (n,) int64 show advertised
    tier: np.ndarray  # (n,) int8 its popularity tier that day (contract.tier_of)
    click: np.ndarray  # (n,) bool
    stream: np.ndarray  # (n,) bool
    like: np.ndarray  # (n,) bool (False where there is no like button: audio ads)
    follow: np.ndarray  # (n,) bool
    p_stream: np.ndarray  # (n,) float64 true marginal P(stream) of the served impression


def served_placements(world: World, market: Marketplace, served: Served, rows: np.ndarray) -> Placements:
    """The served impressions of ``rows`` as ad placements of the world."""
    opp = market.opportunities
    creative = served.creative[rows]
    return Placements(
        user=opp.user[rows], show=world.campaigns.creative_show[creative],
        source=np.full(len(rows), vocab.SOURCE_ADS), creative=creative, surface=opp.surface[rows],
        device=opp.device[rows], slot=opp.slot[rows], layout=np.full(len(rows), -1),
        hour=opp.hour[rows], day=opp.day[rows],
    )  # fmt: skip


def draw_outcomes(world: World, market: Marketplace, served: Served) -> Outcomes:
    """Labels of every filled opportunity, from its shared uniforms (see the module docstring)."""
    filled = np.flatnonzero(served.filled)
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, max(len(filled), 1), _CHUNK):
        rows = filled[lo : lo + _CHUNK]
        p = served_placements(world, market, served, rows)
        chain = world.chain(p)
        u = market.opportunities.uniforms[rows]  # (n, 4)
        click = u[:, 0] < chain.click
        stream = u[:, 1] < np.where(click, chain.stream_click, chain.stream_no_click)
        like = (u[:, 2] < np.where(stream, chain.like_stream, chain.like_no_stream)) & chain.like_observed
        follow = u[:, 3] < np.where(stream, chain.follow_stream, chain.follow_no_stream)
        parts.append({
            "rows": rows, "show": p.show, "tier": world.tier(p.show, p.day), "click": click, "stream": stream,
            "like": like, "follow": follow, "p_stream": chain.marginals()["stream"],
        })  # fmt: skip
    return Outcomes(**{name: np.concatenate([part[name] for part in parts]) for name in parts[0]})
