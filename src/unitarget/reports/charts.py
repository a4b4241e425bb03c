"""Per-tier charts of average precision, saved as PNG.

Figures are built on matplotlib's object API with an explicit Agg canvas (no ``pyplot``), so
importing or calling this module never changes the process-wide backend or keeps figures alive.
Files are written atomically, through ``io.atomic_output`` like every other output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from unitarget.contract import LESS_STREAMED_MIN_TIER, N_TIERS
from unitarget.evaluation import EvaluationResult, tier_short_label
from unitarget.io import atomic_output
from unitarget.reports.format import format_relative

_TIERS = np.arange(N_TIERS)
_NOTE = {"ha": "center", "va": "bottom", "rotation": 90, "fontsize": 8, "color": "0.35"}


def figure() -> tuple[Figure, Axes]:
    """A 12 x 5.5 inch constrained-layout figure on an Agg canvas, made without pyplot: no global state and no display
    needed."""
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_png(fig: Figure, path: Path, dpi: int = 150) -> None:
    """Write ``fig`` to ``path`` atomically (``io.atomic_output``: a failed save keeps the old chart)."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def tier_axis(ax: Axes, title: str, ylabel: str) -> None:
    """Tier ticks "0\\n≥1M" … "7\\n0 streams", the shaded less-streamed band, labels and legend."""
    ax.axvspan(LESS_STREAMED_MIN_TIER - 0.5, N_TIERS - 0.5, color="0.94", zorder=0,
               label="less-streamed creators")
    ax.set_xticks(_TIERS, [f"{t}\n{tier_short_label(t)}" for t in _TIERS])
    ax.set_xlim(-0.5, N_TIERS - 0.5)
    ax.set_xlabel("popularity tier (streams over 30 days)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)  # outside the data


def tier_ap_chart(
    results: Mapping[str, EvaluationResult],
    target: str,
    path: Path,
    *,
    title: str,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Grouped bars: AP of ``target`` per tier 0..7 for each setup, oracle AP as dashed ticks.

    Tiers where no setup has an AP (no positives) are marked "no positives"; a single missing bar
    is marked "n/a".
    """
    if not results:
        raise ValueError("tier_ap_chart needs at least one result")
    labels = labels or {}
    names = list(results)
    ap = np.vstack([results[name].tier_values(target) for name in names])  # (setups, tiers)
    fig, ax = figure()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = _TIERS + (i - (len(names) - 1) / 2) * width
        ax.bar(xs, np.nan_to_num(ap[i]), width, label=labels.get(name, name))
        partly = np.isnan(ap[i]) & ~np.isnan(ap).all(axis=0)
        for x in xs[partly]:
            ax.text(x, 0, "n/a", **_NOTE)
    for t in _TIERS[np.isnan(ap).all(axis=0)]:
        ax.text(t, 0, "no positives", **_NOTE)

    oracle = results[names[0]].tier_values(target, "oracle_ap")
    if np.isfinite(oracle).any():
        ok = np.isfinite(oracle)
        ax.hlines(oracle[ok], _TIERS[ok] - 0.42, _TIERS[ok] + 0.42, colors="black",
                  linestyles="dashed", label="oracle AP (true probabilities)")
    ax.set_ylim(bottom=0)
    tier_axis(ax, title, "average precision")
    save_png(fig, path)


def tier_relative_gain_chart(
    results: Mapping[str, EvaluationResult],
    target: str,
    baseline: str,
    path: Path,
    *,
    title: str,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Lines: relative AP change (AP - AP_baseline) / AP_baseline of each setup per tier.

    The paper's claim is that these gains grow as popularity falls (tier 0 -> tier 7). A dotted
    line in each setup's colour gives its gain on all rows for reference.
    """
    if baseline not in results:
        raise KeyError(f"baseline {baseline!r} is not among the setups {list(results)}")
    others = [name for name in results if name != baseline]
    if not others:
        raise ValueError("tier_relative_gain_chart needs at least one setup besides the baseline")
    labels = labels or {}
    base = results[baseline].tier_values(target)
    base_all = results[baseline].ap(target)
    fig, ax = figure()
    undefined = np.ones(N_TIERS, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in others:
            gain = np.where(base > 0, (results[name].tier_values(target) - base) / base, np.nan)
            undefined &= np.isnan(gain)
            overall = (results[name].ap(target) - base_all) / base_all if base_all > 0 else np.nan
            label = f"{labels.get(name, name)} (all rows: {format_relative(overall)})"
            line = ax.plot(_TIERS, gain, "o-", label=label)[0]
            if np.isfinite(overall):
                ax.axhline(overall, color=line.get_color(), linestyle=":", linewidth=1)
    for t in _TIERS[undefined]:
        ax.text(t, 0, "n/a", **_NOTE)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    tier_axis(ax, title, f"AP change vs {labels.get(baseline, baseline)}")
    save_png(fig, path)
