"""Number formatting shared by every report, so a change reads the same in REPORT.md, ABLATION.md
and AB.md: signed percentages with the paper's typographic minus, interval points, p-values."""

from __future__ import annotations

import math

MINUS = "\u2212"  # typographic minus sign, as in the paper


def relative_change(value: float, baseline: float) -> float:
    """(value - baseline) / baseline; NaN when either is NaN or the baseline is 0."""
    if math.isnan(value) or math.isnan(baseline) or baseline == 0:
        return float("nan")
    return (value - baseline) / baseline


def format_relative(change: float, digits: int = 1) -> str:
    """A fraction as a signed percentage: 0.045 -> "+4.5%", -0.079 -> "−7.9%" (U+2212), NaN -> "n/a"."""
    if math.isnan(change):
        return "n/a"
    pct = round(change * 100.0, digits)
    if pct == 0:
        return f"{0.0:.{digits}f}%"
    return f"{'+' if pct > 0 else MINUS}{abs(pct):.{digits}f}%"


def format_points(points: float) -> str:
    """Percentage points with a sign and one decimal, for interval bounds: "+6.0", "−1.2", "n/a"."""
    if math.isnan(points):
        return "n/a"
    return f"{'+' if points > 0 else MINUS if points < 0 else ''}{abs(points):.1f}"


def format_p(p: float) -> str:
    """A p-value for a table cell: ``p<0.001``, ``p=0.123``, or ``p n/a`` when it is NaN."""
    if math.isnan(p):
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"
