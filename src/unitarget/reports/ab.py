"""What the report of a simulation writes: AB.md, ab_metrics.csv, ab_counts.csv, ab_tiers.png, simulation.json.

Every figure in AB.md is also in ab_metrics.csv (one row per arm x segment x metric, with the
control's value, the relative change, its 95 % interval and p-value); ab_counts.csv holds the raw
sums per arm x market x segment, so any other statistic can be recomputed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path

from unitarget.contract import N_TIERS
from unitarget.evaluation.segments import LESS_STREAMED, SEGMENTS, TIER_SEGMENTS, segment_label
from unitarget.io import atomic_write_json, atomic_write_text
from unitarget.reports.ab_chart import tier_change_chart
from unitarget.reports.format import format_p, format_points, format_relative
from unitarget.simulation.metrics import COUNTS, METRIC_LABELS, METRICS
from unitarget.simulation.result import SimulationResult

REPORT_FILE = "AB.md"
METRICS_CSV = "ab_metrics.csv"
COUNTS_CSV = "ab_counts.csv"
TIER_CHART = "ab_tiers.png"
SUMMARY_JSON = "simulation.json"

#: The paper's Table 2 columns.
TABLE2_METRICS = ("i2s", "ecps", "ctr", "streams")
#: Segments of Table 2, in the paper's order.
TABLE2_SEGMENTS = (LESS_STREAMED, "all")
SEGMENT_TITLES = {LESS_STREAMED: "Less-streamed creators", "all": "All podcasts"}


def write_simulation(
    result: SimulationResult,
    out: Path,
    *,
    paper_tiers: Mapping[str, Mapping[int, float]] | None = None,
    paper_arm: str | None = None,
) -> Path:
    """Write every output of ``result`` into ``out``; returns the path of AB.md. ``paper_tiers``
    (metric -> tier -> change) adds the paper's points for ``paper_arm`` to the tier chart."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / METRICS_CSV, metrics_csv(result))
    atomic_write_text(out / COUNTS_CSV, counts_csv(result))
    summary = {"config": result.config.model_dump(mode="json"), "arms": result.arms,
               "control": result.control}
    atomic_write_json(out / SUMMARY_JSON, {**summary, **result.summary})
    tier_change_chart(result, out / TIER_CHART, paper=paper_tiers, paper_arm=paper_arm)
    atomic_write_text(out / REPORT_FILE, ab_markdown(result, TIER_CHART))
    return out / REPORT_FILE


def metrics_csv(result: SimulationResult) -> str:
    """One CSV row per (arm, segment, metric): the arm's value, the control's, the change against the control with its
    95 % interval and p-value; NaN written as an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    stats = ("change", "ci_low", "ci_high", "p_value")
    writer.writerow(["arm", "segment", "metric", "value", "control_value", *stats])
    for arm in result.arms:
        for segment in SEGMENTS:
            for metric in METRICS:
                values = [result.get("value", name, segment, metric) for name in (arm, result.control)]
                values += [result.get(w, arm, segment, metric) for w in stats]
                writer.writerow([arm, segment, metric, *map(_num, values)])
    return buffer.getvalue()


def counts_csv(result: SimulationResult) -> str:
    """The count cube as CSV, one row per (arm, market, segment) with every ``COUNTS`` column: the sums every metric is
    a ratio of, so any metric can be recomputed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arm", "market", "segment", *COUNTS])
    for a, arm in enumerate(result.arms):
        for market in range(result.cube.shape[1]):
            for s, segment in enumerate(SEGMENTS):
                writer.writerow([arm, market, segment, *(_num(v) for v in result.cube[a, market, s])])
    return buffer.getvalue()


def _num(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def cell(result: SimulationResult, arm: str, segment: str, metric: str) -> str:
    """"+11.4% [+6.0, +17.1], p=0.001": the change, its 95 % interval (points) and p-value."""
    change = result.get("change", arm, segment, metric)
    if math.isnan(change):
        return "n/a"
    low, high = (result.get(w, arm, segment, metric) * 100 for w in ("ci_low", "ci_high"))
    p = result.get("p_value", arm, segment, metric)
    return f"{format_relative(change)} [{format_points(low)}, {format_points(high)}], {format_p(p)}"


def setup_lines(result: SimulationResult) -> str:
    """What was simulated, in a few bullets (sizes, budgets, design, time)."""
    s, c = result.summary, result.config
    objective = " + ".join(f"{w:g}·P({label})" for label, w in c.objective.items())
    return "\n".join([
        f"- {s['opportunities']:,} ad opportunities over world days {s['days'][0]}–{s['days'][1]} from "
        f"{s['users']:,} users in {s['markets']} markets; {s['campaigns']:,} running campaigns "
        f"({s['new_show_campaigns']:,} of them for shows launched during the period).",
        f"- Each arm replays the same opportunities with {c.budget_share:.0%} of every campaign's budget "
        f"({s['budget_per_arm']:,.0f} per arm at a median CPM of {c.cpm:g}; the full budgets would buy "
        f"{c.budget_to_supply:g}× the opportunities), paced evenly over each flight.",
        f"- Each opportunity retrieves {c.candidates} creatives; an arm ranks them by {objective}"
        f"{' per unit of price' if c.value_per_cost else ''} (random: at random). Outcomes are drawn from "
        "the world's true probabilities with the same random numbers in every arm.",
        f"- Intervals: 95 % market bootstrap ({c.bootstrap:,} resamples); p-values: sign flips of arms "
        f"within markets ({c.permutations:,}, or all 2^{s['markets']} when fewer). Seed {c.seed}.",
        f"- Simulated in {s['seconds']['total']:.0f} s (" + ", ".join(
            f"{k} {v:.0f} s" for k, v in s["seconds"].items() if k != "total") + ").",
    ])


def absolute_table(result: SimulationResult, segments: tuple[str, ...] = TABLE2_SEGMENTS) -> str:
    """Each arm's own figures: impressions, spend, streams, i2s, eCPS, CTR, follows, expected i2s."""
    shown = ("impressions", "spend", "streams", "i2s", "ecps", "ctr", "follows", "expected_i2s")
    lines = ["| Segment | Arm | " + " | ".join(METRIC_LABELS[m] for m in shown) + " |",
             "| --- | --- |" + " ---: |" * len(shown)]
    formats = {"impressions": "{:,.0f}", "spend": "{:,.1f}", "streams": "{:,.0f}", "i2s": "{:.3%}",
               "ecps": "{:.3f}", "ctr": "{:.3%}", "follows": "{:,.0f}", "expected_i2s": "{:.3%}"}
    for segment in segments:
        for arm in result.arms:
            values = [result.get("value", arm, segment, m) for m in shown]
            cells = ["n/a" if math.isnan(v) else formats[m].format(v) for m, v in zip(shown, values)]
            lines.append(f"| {segment_label(segment)} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative_table(
    result: SimulationResult, metrics: tuple[str, ...] = (*TABLE2_METRICS, "expected_i2s")
) -> str:
    """Every other arm against the control for the two Table 2 segments."""
    lines = ["| Segment | Arm | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
             "| --- | --- |" + " ---: |" * len(metrics)]
    for segment in TABLE2_SEGMENTS:
        for arm in result.arms:
            if arm != result.control:
                cells = [cell(result, arm, segment, m) for m in metrics]
                lines.append(f"| {SEGMENT_TITLES[segment]} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tier_table(result: SimulationResult, arms: tuple[str, ...] | None = None) -> str:
    """Per tier: the control's impressions, then each arm's relative i2s and eCPS change."""
    arms = tuple(a for a in (arms or result.arms) if a != result.control)
    header = ["Tier", f"impressions ({result.control})"]
    header += [f"{label} {arm}" for arm in arms for label in ("i2s", "eCPS", "expected i2s")]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for tier in range(N_TIERS):
        segment = TIER_SEGMENTS[tier]
        row = [segment_label(segment), f"{result.get('value', result.control, segment, 'impressions'):,.0f}"]
        for arm in arms:
            row += [format_relative(result.get("change", arm, segment, m))
                    for m in ("i2s", "ecps", "expected_i2s")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def ab_markdown(result: SimulationResult, chart: str) -> str:
    """AB.md: the setup, each arm's metrics, their change against the control with intervals and p-values, and the tier
    chart (at ``chart``) with its table."""
    return "\n\n".join([
        "# Budget-split A/B simulation",
        f"Control: **{result.control}**. Design and definitions: docs/simulation.md.",
        setup_lines(result),
        "## Each arm",
        absolute_table(result),
        "## Relative to the control",
        "Relative change of each arm's metric to the control's, 95 % interval in percentage points, "
        "p-value. *Expected i2s* uses the true probability of each served impression instead of its "
        "drawn outcome: the same targeting without the noise of the draws.",
        relative_table(result),
        "## By popularity tier",
        f"![Relative i2s and eCPS change by tier]({chart})",
        tier_table(result),
    ]) + "\n"
