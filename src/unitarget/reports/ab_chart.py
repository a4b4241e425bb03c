"""The tier chart of an A/B simulation: relative i2s and eCPS change against the control by tier.

The paper's section 4.4.1 reports the unified model's gains growing from tier 0 to tier 5; the
chart puts the measured changes (with 95 % intervals over markets) beside those points. Same style
and atomic save as the offline charts (reports/charts.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from unitarget.contract import N_TIERS
from unitarget.evaluation.segments import TIER_SEGMENTS
from unitarget.reports.charts import save_png, tier_axis
from unitarget.simulation.result import ORACLE, RANDOM, SimulationResult

_TIERS = np.arange(N_TIERS)
PANELS = (("i2s", "impression-to-stream rate (i2s)"), ("ecps", "effective cost per stream (eCPS)"))


def tier_change_chart(
    result: SimulationResult,
    path: Path,
    *,
    arms: Sequence[str] | None = None,
    paper: Mapping[str, Mapping[int, float]] | None = None,
    paper_arm: str | None = None,
) -> None:
    """Two panels (i2s, eCPS): each arm's relative change to the control per tier, with intervals.

    ``paper`` maps a metric to {tier: the paper's relative change}, drawn as black diamonds for
    ``paper_arm``. The y range follows the model arms (oracle and random may leave it at sparse
    tiers, where their changes are extreme).
    """
    arms = [a for a in (arms or result.arms) if a != result.control]
    fig = Figure(figsize=(12, 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1)
    for ax, (metric, title) in zip(axes, PANELS):
        shown: list[float] = []
        for i, arm in enumerate(arms):
            change, low, high = (
                np.array([result.get(what, arm, seg, metric) for seg in TIER_SEGMENTS])
                for what in ("change", "ci_low", "ci_high")
            )
            reference = arm in (ORACLE, RANDOM)
            x = _TIERS + (i - (len(arms) - 1) / 2) * 0.08
            err = np.vstack([np.clip(change - low, 0, None), np.clip(high - change, 0, None)])
            ax.errorbar(x, change, yerr=np.nan_to_num(err), fmt="o--" if reference else "o-", capsize=3,
                        alpha=0.6 if reference else 1.0, label=f"{arm} vs {result.control} (95 % interval)")
            if not reference or all(a in (ORACLE, RANDOM) for a in arms):
                shown += list(change[np.isfinite(change)])
        if paper and metric in paper:
            tiers = sorted(paper[metric])
            values = [paper[metric][t] for t in tiers]
            ax.plot(tiers, values, "D", color="black", markersize=8,
                    label=f"paper, {paper_arm or 'treatment'}")
            shown += values
        if shown:
            pad = 0.15 * (max(shown) - min(shown)) + 0.05
            ax.set_ylim(min(min(shown), 0.0) - pad, max(max(shown), 0.0) + pad)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        tier_axis(ax, f"Relative change in {title} by tier", f"change vs {result.control}")
    save_png(fig, path)
