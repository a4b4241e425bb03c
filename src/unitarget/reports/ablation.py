"""The ablation report: tables (Markdown + CSV) and charts, from ``studies.ablation`` runs."""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unitarget.contract import N_TIERS
from unitarget.evaluation import ADS_STREAM, PROMOTIONS_STREAM
from unitarget.io import atomic_write_text
from unitarget.presets import BASELINE_PRESET
from unitarget.reports.charts import figure, save_png, tier_axis
from unitarget.reports.format import format_relative
from unitarget.studies.ablation import (
    CLAIMS,
    COLD_AD_SLICE,
    LOSS_METHODS,
    SUMMARY_TARGETS,
    AblationRun,
    PairedChange,
    Verdict,
    judge,
    paired_change,
    summarise,
)


def write_ablation_report(runs: Sequence[AblationRun], out_dir: Path, *, heading: str) -> str:
    """Write ablation.csv, ablation.png, ablation_tiers.png; return the Markdown section."""
    summary = summarise(runs)
    _write_csv(runs, out_dir / "ablation.csv")
    _bar_chart(summary, out_dir / "ablation.png")
    _tier_gain_chart(runs, out_dir / "ablation_tiers.png")
    seeds = sorted({r.seed for r in runs})
    return "\n\n".join([
        heading,
        f"Each row is trained with {len(seeds)} seed(s) ({', '.join(map(str, seeds))}); cells give the mean "
        "relative AP change against the promotions baseline trained with the same seed, ± the standard "
        "deviation over seeds, then the mean absolute AP. *Cold ad history*: ad impressions of shows "
        "with fewer than 50 ad impressions but some promotion impressions in the training days.",
        _summary_table(summary),
        "![Relative AP change of each ablation](ablation.png)",
        "### What the ablations say about the paper's claims",
        claim_lines(runs),
        "### AP by popularity tier, every model (mean over seeds)",
        _tier_table(runs, PROMOTIONS_STREAM, "Promotions AP"),
        _tier_table(runs, ADS_STREAM, "Ads AP"),
        "![Relative Ads AP gain of the unified model by tier](ablation_tiers.png)",
        _tier_trend(runs),
    ])


def _cell(row: dict[str, Any]) -> str:
    if math.isnan(row["ap_mean"]):
        return "—"
    spread = "" if math.isnan(row["change_std"]) else f" ± {row['change_std'] * 100:.1f}"
    change = "baseline" if row["variant"] == BASELINE_PRESET else f"{format_relative(row['change_mean'])}{spread}"
    return f"{change} ({row['ap_mean']:.4f})"


def _summary_table(summary: list[dict[str, Any]]) -> str:
    columns = [c for c, _, _ in SUMMARY_TARGETS]
    lines = ["| Setup | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for variant in dict.fromkeys(r["variant"] for r in summary):
        cells = {r["column"]: r for r in summary if r["variant"] == variant}
        display = next(iter(cells.values()))["display"]
        lines.append(f"| {display} | " + " | ".join(_cell(cells[c]) for c in columns) + " |")
    return "\n".join(lines)


def _write_csv(runs: Sequence[AblationRun], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", "seed", "target", "segment", "ap", "oracle_ap", "n", "n_pos", "seconds"])
    for run in runs:
        for row in run.result.rows:
            writer.writerow([run.variant.name, run.seed, row.target, row.segment, row.ap, row.oracle_ap,
                             row.n, row.n_pos, round(run.seconds, 1)])
        writer.writerow([run.variant.name, run.seed, COLD_AD_SLICE, "all", run.cold_slice_ap,
                         "", "", "", round(run.seconds, 1)])
    atomic_write_text(path, buffer.getvalue())


def _bar_chart(summary: list[dict[str, Any]], path: Path) -> None:
    fig, ax = figure()
    variants = [v for v in dict.fromkeys(r["variant"] for r in summary) if v != BASELINE_PRESET]
    labels = {r["variant"]: r["display"] for r in summary}
    y = np.arange(len(variants))
    for k, column in enumerate(("Promotions AP", "Ads AP")):
        rows = {r["variant"]: r for r in summary if r["column"] == column}
        means = [rows[v]["change_mean"] * 100 for v in variants]
        errors = [0 if math.isnan(rows[v]["change_std"]) else rows[v]["change_std"] * 100 for v in variants]
        ax.barh(y + (k - 0.5) * 0.4, means, 0.4, xerr=errors, label=column, capsize=2)
    ax.set_yticks(y, [labels[v] for v in variants])
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("relative AP change against the promotions baseline (%), mean ± sd over seeds")
    ax.set_title("Ablations of the unified model")
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.set_size_inches(12, 0.45 * len(variants) + 2)
    save_png(fig, path)


def _tier_means(runs: Sequence[AblationRun], variant: str, target: str) -> np.ndarray:
    values = [r.result.tier_values(target) for r in runs if r.variant.name == variant]
    if not values:
        return np.full(N_TIERS, np.nan)
    with warnings.catch_warnings():  # a tier with no positives in any seed stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def _tier_table(runs: Sequence[AblationRun], target: str, title: str) -> str:
    tiers = range(N_TIERS)
    lines = [f"| {title} | " + " | ".join(f"tier {t}" for t in tiers) + " |", "| --- |" + " ---: |" * N_TIERS]
    for name, display in dict.fromkeys((r.variant.name, r.variant.display) for r in runs):
        means = _tier_means(runs, name, target)
        lines.append(f"| {display} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    return "\n".join(lines)


def _gains(runs: Sequence[AblationRun], over: str) -> np.ndarray:
    unified, base = _tier_means(runs, "unified", ADS_STREAM), _tier_means(runs, over, ADS_STREAM)
    return (unified - base) / base


def _tier_gain_chart(runs: Sequence[AblationRun], path: Path) -> None:
    fig, ax = figure()
    for over, label in ((BASELINE_PRESET, "over the promotions baseline"), ("ads-stream-only", "over ads stream head-only")):
        ax.plot(np.arange(N_TIERS), _gains(runs, over) * 100, marker="o", label=f"unified {label}")
    ax.axhline(0, color="black", lw=0.8)
    tier_axis(ax, "Ads AP: relative gain of the unified model by tier (mean AP over seeds)", "relative AP gain (%)")
    ax.legend()
    save_png(fig, path)


def _tier_trend(runs: Sequence[AblationRun]) -> str:
    """Does the gain grow as popularity falls (the paper's claim)? Judged by the slope over tiers."""
    sentences = []
    for over in (BASELINE_PRESET, "ads-stream-only"):
        gains = _gains(runs, over)
        finite = np.isfinite(gains)
        if finite.sum() < 2:
            continue
        slope = np.polyfit(np.arange(N_TIERS)[finite], gains[finite], 1)[0]
        verdict = "grows as popularity falls, as the paper reports" if slope > 0 else \
            "does not grow as popularity falls (the paper reports that it does)"
        sentences.append(f"Over {over}, the unified model's Ads AP gain {verdict}: linear trend "
                         f"{format_relative(slope)} per tier.")
    return " ".join(sentences)


#: How each verdict of ``studies.ablation.judge`` reads in the report.
_VERDICT_TEXT: dict[Verdict, str] = {
    "one seed": "one seed, no spread to judge by",
    "not separable": "within the seed spread (not separable)",
    "agrees": "**agrees**",
    "disagrees": "**disagrees**",
}


def _measured(change: PairedChange) -> str:
    spread = "" if change.seeds < 2 else f" ± {change.relative_error * 100:.1f}"
    return f"{format_relative(change.relative)}{spread}"


def claim_lines(runs: Sequence[AblationRun]) -> str:
    """One line per claim the runs can check: the paired change over seeds, and a verdict that
    needs the change to exceed two standard errors of the paired seed differences."""
    lines = []
    for claim, variant, reference, target, expected in CLAIMS:
        change = paired_change(runs, variant, reference, target)
        if change is None or not math.isfinite(change.relative):
            continue
        lines.append(f"- Paper: {claim}. Measured: {variant} vs {reference}, {_measured(change)} "
                     f"({change.seeds} seeds): {_VERDICT_TEXT[judge(change, expected)]}.")
    balancers = []
    for method in LOSS_METHODS:
        changes = [paired_change(runs, method, "unified", t) for t in (PROMOTIONS_STREAM, ADS_STREAM)]
        if all(c is not None and math.isfinite(c.relative) for c in changes):
            judged = [f"{'better' if c.mean > 0 else 'worse'} than static weights on {channel}"
                      for channel, c in zip(("promotions", "ads"), changes) if c.separable]
            balancers.append(f"{method.removeprefix('loss-')}: Promotions AP {_measured(changes[0])}, Ads AP "
                             f"{_measured(changes[1])} ({', '.join(judged) or 'not separable from static weights'})")
    if balancers:
        lines.append("- Loss balancing (the paper deploys static weights λ = 1 and cites the others as "
                     "remedies for negative transfer), against unified: " + "; ".join(balancers) + ".")
    note = ("Changes are relative to the reference row's mean AP, ± one standard error of the per-seed "
            "paired differences; a verdict needs the change beyond two standard errors.")
    return "\n".join(lines) + "\n\n" + note if lines else ""
