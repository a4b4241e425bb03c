"""Popularity segments: all rows, each stream tier 0..7, and the paper's two tier groups.

Tiers come from ``contract.tier_of``. Tiers 0-2 are *high-stream*; tiers 3-7 (fewer than 5,000
streams in 30 days) are the *less-streamed creators* segment the paper reports separately
(docs/data-contract.md). Every evaluation result lists its rows in :data:`SEGMENTS` order.
"""

from __future__ import annotations

import numpy as np

from unitarget.contract import LESS_STREAMED_MIN_TIER, N_TIERS, TIER_LOWER_BOUNDS

ALL = "all"
LESS_STREAMED = "less_streamed"
HIGH_STREAM = "high_stream"
TIER_SEGMENTS: tuple[str, ...] = tuple(f"tier_{t}" for t in range(N_TIERS))
SEGMENTS: tuple[str, ...] = (ALL, *TIER_SEGMENTS, LESS_STREAMED, HIGH_STREAM)


def check_tier(tier: np.ndarray) -> np.ndarray:
    """``tier`` as a 1-D integer array with values in 0..N_TIERS-1, or a ValueError saying why not."""
    tier = np.asarray(tier)
    if tier.ndim != 1 or not np.issubdtype(tier.dtype, np.integer):
        raise ValueError(f"tier must be a 1-D integer array, got dtype {tier.dtype} and shape {tier.shape}")
    bad = (tier < 0) | (tier >= N_TIERS)
    if bad.any():
        raise ValueError(f"tier values must lie in 0..{N_TIERS - 1}; {int(bad.sum())} rows do not")
    return tier


def segment_masks(tier: np.ndarray) -> np.ndarray:
    """Boolean masks of shape (len(SEGMENTS), n), one row per segment in :data:`SEGMENTS` order."""
    tier = check_tier(tier)
    one_hot = tier[None, :] == np.arange(N_TIERS)[:, None]  # (N_TIERS, n)
    less = tier >= LESS_STREAMED_MIN_TIER  # (n,)
    return np.vstack([np.ones_like(less), one_hot, less, ~less])


def _short_count(value: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "K")):
        if value >= div and value % div == 0:
            return f"{value // div}{suffix}"
    return str(value)


def tier_short_label(tier: int) -> str:
    """Stream range of a tier: ``"≥1M"`` for tier 0 … ``"0 streams"`` for tier 7."""
    bound = TIER_LOWER_BOUNDS[tier]
    return "0 streams" if bound == 0 else f"≥{_short_count(bound)}"


def segment_label(segment: str) -> str:
    """Human label of a segment key: ``"tier 3 (≥1K)"``, ``"less-streamed (tiers 3–7)"`` …"""
    if segment in TIER_SEGMENTS:
        t = TIER_SEGMENTS.index(segment)
        return f"tier {t} ({tier_short_label(t)})"
    return {
        ALL: "all",
        LESS_STREAMED: f"less-streamed (tiers {LESS_STREAMED_MIN_TIER}–{N_TIERS - 1})",
        HIGH_STREAM: f"high-stream (tiers 0–{LESS_STREAMED_MIN_TIER - 1})",
    }.get(segment, segment)
