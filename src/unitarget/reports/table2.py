"""The paper's online results (Table 2, section 4.4.1) beside a simulation, for results/REPORT.md.

Every sentence that judges agreement is computed from the measured figures; nothing here knows
what the answer "should" be beyond the paper's own numbers.
"""

from __future__ import annotations

import math

import numpy as np

from unitarget.evaluation.segments import LESS_STREAMED, TIER_SEGMENTS
from unitarget.reports.ab import SEGMENT_TITLES, TABLE2_METRICS, TABLE2_SEGMENTS, TIER_CHART, cell, setup_lines
from unitarget.reports.format import format_relative
from unitarget.simulation.metrics import METRIC_LABELS
from unitarget.simulation.result import ORACLE, RANDOM, SimulationResult

#: Table 2: the unified model relative to the Fig. 2A baseline (all significant at p < 0.05).
PAPER_TABLE2: dict[str, dict[str, float]] = {
    LESS_STREAMED: {"i2s": 0.24, "ecps": -0.22, "ctr": 0.10, "streams": 0.27},
    "all": {"i2s": 0.18, "ecps": -0.20, "ctr": 0.09, "streams": 0.18},
}
#: Section 4.4.1, by tier. The text gives i2s for tiers 0 and 2–5 and says CPS falls "by 4–17%"
#: over tiers 0–2 (read here as tier 0: −4 %, tier 2: −17 %), then −20 / −24 / −38 % for tiers
#: 3–5.
PAPER_TIERS: dict[str, dict[int, float]] = {
    "i2s": {0: 0.07, 2: 0.20, 3: 0.27, 4: 0.33, 5: 0.60},
    "ecps": {0: -0.04, 2: -0.17, 3: -0.20, 4: -0.24, 5: -0.38},
}
SIGNIFICANT = 0.05
#: Where the reproduction writes the simulation, relative to its results directory.
AB_DIR = "ab"


def reproduction_section(result: SimulationResult, treatment: str = "unified") -> str:
    """The section of results/REPORT.md (paths relative to the results directory)."""
    return table2_section(result, treatment, f"{AB_DIR}/{TIER_CHART}")


def table2_section(result: SimulationResult, treatment: str, chart: str) -> str:
    """The A/B section of REPORT.md: Table 2 measured vs the paper, reference arms, tiers, verdicts."""
    lines = ["| Segment | Arm | " + " | ".join(METRIC_LABELS[m] for m in TABLE2_METRICS) + " |",
             "| --- | --- |" + " ---: |" * len(TABLE2_METRICS)]
    for segment in TABLE2_SEGMENTS:
        paper = [format_relative(PAPER_TABLE2[segment][m], 0) for m in TABLE2_METRICS]
        title = SEGMENT_TITLES[segment]
        lines.append(f"| {title} | paper: unified vs baseline | " + " | ".join(paper) + " |")
        for arm in result.arms:
            if arm != result.control:
                cells = [cell(result, arm, segment, m) for m in TABLE2_METRICS]
                name = f"**{arm}**" if arm == treatment else arm
                lines.append(f"| {SEGMENT_TITLES[segment]} | {name} | " + " | ".join(cells) + " |")
    return "\n\n".join([
        f"## Table 2: online budget-split A/B simulation ({treatment} vs {result.control})",
        "The paper's live test compared the unified model with the baseline that used the promotions "
        "model for ad cold start. Here the same comparison runs against the synthetic world's truth "
        f"on the newest {result.config.days} days (by default the test days, which no model trained on), "
        "with an oracle arm (the world's true probabilities) and a random arm as the ceiling and the "
        "floor. Each cell: relative change to the control, 95 % interval in "
        "percentage points, p-value over markets. Design: docs/simulation.md.",
        setup_lines(result),
        "\n".join(lines),
        verdict(result, treatment),
        f"![Relative i2s and eCPS change by tier]({chart})",
        tier_lines(result, treatment),
    ])


def verdict(result: SimulationResult, treatment: str) -> str:
    """Agreement with Table 2, cell by cell, and how much of the oracle's gain the treatment takes."""
    if treatment not in result.arms:
        return ""
    agree, opposite, weak = [], [], []
    for segment in TABLE2_SEGMENTS:
        for metric in TABLE2_METRICS:
            change = result.get("change", treatment, segment, metric)
            p = result.get("p_value", treatment, segment, metric)
            name = f"{METRIC_LABELS[metric]} ({SEGMENT_TITLES[segment].lower()})"
            same_sign = np.sign(change) == np.sign(PAPER_TABLE2[segment][metric])
            (agree if same_sign and p < SIGNIFICANT else opposite if not same_sign and p < SIGNIFICANT
             else weak).append(name)
    parts = [
        f"**Agreement with Table 2:** {len(agree)} of {len(agree) + len(opposite) + len(weak)} cells move "
        "in the "
        f"paper's direction with p < {SIGNIFICANT}" + (f"; {len(opposite)} move significantly the other way "
                                                        f"({', '.join(opposite)})" if opposite else "")
        + (f"; {len(weak)} are not significant ({', '.join(weak)})" if weak else "") + ".",
        _magnitude(result, treatment),
        _segment_claim(result, treatment),
        _oracle_share(result, treatment),
    ]
    return " ".join(p for p in parts if p)


def _magnitude(result: SimulationResult, treatment: str) -> str:
    measured = result.get("change", treatment, "all", "i2s")
    paper = PAPER_TABLE2["all"]["i2s"]
    if math.isnan(measured):
        return ""
    size = ("larger than" if measured > 1.25 * paper else "smaller than" if measured < 0.75 * paper
            else "close to")
    return (f"On all podcasts the measured i2s change ({format_relative(measured)}) is {size} the paper's "
            f"({format_relative(paper, 0)}).")


def _segment_claim(result: SimulationResult, treatment: str) -> str:
    less = result.get("change", treatment, LESS_STREAMED, "i2s")
    overall = result.get("change", treatment, "all", "i2s")
    if math.isnan(less) or math.isnan(overall):
        return ""
    holds = less > overall
    return (f"The paper's claim that less-streamed creators gain more ({format_relative(less)} vs "
            f"{format_relative(overall)} i2s here) {'**agrees**' if holds else '**disagrees**'}.")


def _oracle_share(result: SimulationResult, treatment: str) -> str:
    """Where the treatment sits between the control (0 %) and the oracle (100 %) on streams."""
    if ORACLE not in result.arms:
        return ""
    shares = []
    for segment in TABLE2_SEGMENTS:
        ceiling = result.get("change", ORACLE, segment, "expected_i2s")
        gained = result.get("change", treatment, segment, "expected_i2s")
        if ceiling > 0 and not math.isnan(gained):
            shares.append(f"{gained / ceiling:.0%} ({SEGMENT_TITLES[segment].lower()})")
    floor = (f"; the random arm is at {format_relative(result.get('change', RANDOM, 'all', 'expected_i2s'))}"
             if RANDOM in result.arms else "")
    return ("Of the expected-i2s gain the oracle reaches over the control, the treatment captures "
            + " and ".join(shares) + floor + ".") if shares else ""


def tier_lines(result: SimulationResult, treatment: str) -> str:
    """The tier pattern of section 4.4.1: measured vs the paper per tier, and whether it is monotone."""
    if treatment not in result.arms:
        return ""
    rows = ["| Tier | i2s | i2s (paper) | eCPS | eCPS (paper) | expected i2s | impressions |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for tier, segment in enumerate(TIER_SEGMENTS):
        paper = [format_relative(PAPER_TIERS[m][tier], 0) if tier in PAPER_TIERS[m] else ""
                 for m in ("i2s", "ecps")]
        i2s, ecps, expected = (format_relative(result.get("change", treatment, segment, m))
                               for m in ("i2s", "ecps", "expected_i2s"))
        imps = result.get("value", treatment, segment, "impressions")
        rows.append(f"| {tier} | {i2s} | {paper[0]} | {ecps} | {paper[1]} | {expected} | {imps:,.0f} |")
    gains = np.array([result.get("change", treatment, s, "i2s") for s in TIER_SEGMENTS[:6]])
    finite = np.isfinite(gains)
    if finite.sum() > 1:
        shown = gains[finite]
        monotone = bool(np.all(np.diff(shown) >= 0) and shown[-1] > shown[0])
        slope = np.polyfit(np.flatnonzero(finite), shown, 1)[0]
        trend = ("grows monotonically from tier 0 to tier 5, as in the paper" if monotone else
                 f"does not grow monotonically over tiers 0–5 (paper: it does); its linear trend is "
                 f"{format_relative(slope)} per tier")
        sentence = (f"The treatment's i2s change {trend}. Sparse tiers (6–7) carry few impressions and "
                    "wide intervals.")
    else:
        sentence = ""
    return "\n".join(rows) + ("\n\n" + sentence if sentence else "")
