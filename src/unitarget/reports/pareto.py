"""The chart of one format's AP against another's, with the Pareto front (``studies.pareto``).

The chart has one panel per pair of formats, each arm a point at its mean with ± one standard
deviation over seeds as bars; arms in ``highlight`` (the main comparison) are filled, the others
(ablations) hollow, and the dashed line is the 2-D front of the highlighted arms in that panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from unitarget.reports.charts import save_png
from unitarget.studies.pareto import pareto_front


def _front_line(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D front of (xs, ys) as a staircase from the best y to the best x."""
    names = {i: (x, y) for i, (x, y) in enumerate(zip(xs, ys))}
    front = sorted(pareto_front(names), key=lambda i: xs[i])
    fx, fy = [], []
    for i in front:
        if fx:
            fx.append(xs[i])
            fy.append(fy[-1])
        fx.append(xs[i])
        fy.append(ys[i])
    return np.array(fx), np.array(fy)


def pareto_chart(
    mean: Mapping[str, Mapping[str, float]],
    std: Mapping[str, Mapping[str, float]],
    formats: Sequence[str],
    path: Path,
    *,
    highlight: Sequence[str],
    labels: Mapping[str, str] | None = None,
    title: str = "",
    metric: str = "click AP",
) -> None:
    """One panel per pair of ``formats``: mean[arm][format] on each axis with std error bars."""
    labels = labels or {}
    pairs = list(combinations(formats, 2))
    fig = Figure(figsize=(6 * len(pairs), 6.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    arms = [a for a in mean if all(np.isfinite(mean[a].get(f, np.nan)) for f in formats)]
    palette = colormaps["tab20"].colors  # dark shades first, then light: 20 distinct colours
    colours = {arm: palette[(2 * i) % 20 + (2 * i // 20) % 2] for i, arm in enumerate(arms)}
    for ax, (fx, fy) in zip(axes, pairs):
        for arm in arms:
            main = arm in highlight
            ax.errorbar(mean[arm][fx], mean[arm][fy], xerr=std[arm].get(fx, 0.0), yerr=std[arm].get(fy, 0.0),
                        fmt="o" if main else "s", color=colours[arm], mfc=colours[arm] if main else "white",
                        ms=8 if main else 6, capsize=3, elinewidth=1, label=labels.get(arm, arm))
        main_arms = [a for a in arms if a in highlight]
        if main_arms:
            xs, ys = np.array([mean[a][fx] for a in main_arms]), np.array([mean[a][fy] for a in main_arms])
            lx, ly = _front_line(xs, ys)
            ax.plot(lx, ly, "--", color="0.4", linewidth=1, zorder=0)
        ax.set_xlabel(f"{metric}, {fx}")
        ax.set_ylabel(f"{metric}, {fy}")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(4, len(names)), fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    save_png(fig, path)
