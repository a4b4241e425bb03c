"""Table 1 arithmetic and formatting; charts write PNG files atomically."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from unitarget.presets import PAPER_TABLE1
from unitarget.evaluation import SEGMENTS, EvaluationResult, MetricRow
from unitarget.reports import (
    MINUS,
    format_relative,
    relative_change,
    table1_markdown,
    tier_ap_chart,
    tier_relative_gain_chart,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(promo_ap: float, ads_ap: float, tier_scale: float = 1.0) -> EvaluationResult:
    """A hand-made result: AP per tier rises with tier by ``tier_scale``; tier 7 has no positives."""
    rows = []
    for target, base in (("promotions_stream", promo_ap), ("ads_stream", ads_ap)):
        for segment in SEGMENTS:
            ap, n_pos = base, 10
            if segment.startswith("tier_"):
                t = int(segment[-1])
                ap, n_pos = (math.nan, 0) if t == 7 else (base * tier_scale ** (t / 6), 10)
            rows.append(MetricRow(target, "t", "stream", None, segment, 100, n_pos, ap, 0.9, 0.7, 0.3, 1.0))
    return EvaluationResult(tuple(rows))


def test_relative_change_and_format() -> None:
    assert relative_change(0.209, 0.2) == pytest.approx(0.045)
    assert relative_change(0.1842, 0.2) == pytest.approx(-0.079)
    assert math.isnan(relative_change(0.1, 0.0))
    assert format_relative(0.045) == "+4.5%"
    assert format_relative(-0.079) == f"{MINUS}7.9%" == "\u22127.9%"
    assert format_relative(-0.0001) == "0.0%"
    assert format_relative(math.nan) == "n/a"


def test_table1_golden() -> None:
    results = {
        "baseline": _result(0.2, 0.1),
        "promo-stream-only": _result(0.1842, 0.0912),
        "mtl5": _result(0.209, 0.1502),
    }
    md = table1_markdown(
        results, "baseline",
        labels={"promo-stream-only": "Promo Stream head-only", "mtl5": "Promo + Ads 5-task MTL"},
    )
    lines = md.splitlines()
    assert lines[0] == "| Task setup | Promotions AP | Ads AP | Promotions AP (abs.) | Ads AP (abs.) |"
    assert lines[2] == "| baseline (baseline) | — | — | 0.2000 | 0.1000 |"
    assert lines[3] == "| Promo Stream head-only | \u22127.9% | \u22128.8% | 0.1842 | 0.0912 |"
    assert lines[4] == "| Promo + Ads 5-task MTL | +4.5% | +50.2% | 0.2090 | 0.1502 |"


def test_table1_with_paper_columns() -> None:
    results = {"base": _result(0.2, 0.1), "unified": _result(0.21, 0.15)}
    md = table1_markdown(results, "base", labels={"unified": "Promo + Ads 5-task MTL"}, paper=PAPER_TABLE1)
    assert "| Promo + Ads 5-task MTL | +5.0% | +50.0% | +4.5% | +50.2% | 0.2100 | 0.1500 |" in md
    with pytest.raises(KeyError, match="nope"):
        table1_markdown(results, "nope")


def test_charts_write_png(tmp_path: Path) -> None:
    results = {"baseline": _result(0.2, 0.1), "mtl5": _result(0.21, 0.15, tier_scale=2.0)}
    ap_png = tmp_path / "charts" / "tier_ap.png"
    gain_png = tmp_path / "charts" / "tier_gain.png"
    tier_ap_chart(results, "ads_stream", ap_png, title="Ads AP by tier", labels={"mtl5": "5-task MTL"})
    tier_relative_gain_chart(results, "ads_stream", "baseline", gain_png, title="Ads AP gain by tier")
    for png in (ap_png, gain_png):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    # written atomically: no temporary files left beside the charts
    assert sorted(p.name for p in ap_png.parent.iterdir()) == ["tier_ap.png", "tier_gain.png"]
    with pytest.raises(ValueError):
        only_baseline = {"baseline": results["baseline"]}
        tier_relative_gain_chart(only_baseline, "ads_stream", "baseline", gain_png, title="x")


def test_charts_do_not_touch_pyplot_state(tmp_path: Path) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    tier_ap_chart({"a": _result(0.2, 0.1)}, "promotions_stream", tmp_path / "a.png", title="t")
    assert matplotlib.get_backend() == backend
    assert (tmp_path / "a.png").read_bytes().startswith(PNG_MAGIC)
