"""The paper's Table 1: AP of each model setup relative to the promotions-only baseline.

Rows are model setups; "Promotions AP" is the ``promotions_stream`` target (``promo_stream`` on
promotion impressions) and "Ads AP" the ``ads_stream`` target (``ad_stream`` on ad impressions),
each shown as the relative change (AP - AP_baseline) / AP_baseline, e.g. "+4.5%" / "−7.9%". The
absolute APs follow in extra columns so a reader can check the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from unitarget.evaluation import ADS_STREAM, PROMOTIONS_STREAM, EvaluationResult
from unitarget.reports.format import format_relative, relative_change


def _ap(result: EvaluationResult, target: str) -> float:
    return result.ap(target) if target in result.targets else float("nan")


def _abs(ap: float) -> str:
    return "n/a" if math.isnan(ap) else f"{ap:.4f}"


def table1_markdown(
    results: Mapping[str, EvaluationResult],
    baseline: str,
    *,
    promotions_target: str = PROMOTIONS_STREAM,
    ads_target: str = ADS_STREAM,
    labels: Mapping[str, str] | None = None,
    paper: Mapping[str, tuple[float, float]] | None = None,
) -> str:
    """Markdown Table 1: relative Promotions/Ads AP change of each setup against ``baseline``.

    Args:
        results: setup key -> its evaluation on the test split (same rows for every setup).
        baseline: key of the reference setup; listed first, marked "(baseline)".
        labels: setup key -> display name (e.g. "promo-stream-only" -> "Promo Stream head-only").
        paper: the paper's relative changes as fractions (see ``unitarget.presets.PAPER_TABLE1``), looked up by
            setup key, then by display name; adds "paper" columns beside the measured ones.
    """
    if baseline not in results:
        raise KeyError(f"baseline {baseline!r} is not among the setups {list(results)}")
    labels = labels or {}
    base_promo = _ap(results[baseline], promotions_target)
    base_ads = _ap(results[baseline], ads_target)

    header = ["Task setup", "Promotions AP", "Ads AP"]
    if paper is not None:
        header += ["Promotions AP (paper)", "Ads AP (paper)"]
    header += ["Promotions AP (abs.)", "Ads AP (abs.)"]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]

    for key in [baseline, *(k for k in results if k != baseline)]:
        name = labels.get(key, key)
        promo, ads = _ap(results[key], promotions_target), _ap(results[key], ads_target)
        if key == baseline:
            cells = [f"{name} (baseline)", "—", "—"]
        else:
            cells = [
                name,
                format_relative(relative_change(promo, base_promo)),
                format_relative(relative_change(ads, base_ads)),
            ]
        if paper is not None:
            reported = paper.get(key, paper.get(name))
            cells += [format_relative(v) for v in reported] if reported else ["—", "—"]
        cells += [_abs(promo), _abs(ads)]
        lines.append("| " + " | ".join(cells) + " |")

    base_name = labels.get(baseline, baseline)
    note = (
        f"Relative change = (AP − AP_baseline) / AP_baseline against **{base_name}** "
        f"(Promotions AP {_abs(base_promo)}, Ads AP {_abs(base_ads)}). Promotions AP scores "
        f"`{promotions_target}`, Ads AP scores `{ads_target}`."
    )
    if paper is not None:
        note += " Paper columns: Table 1 of the WSDM 2026 paper (production data, not this dataset)."
    return "\n".join(lines) + "\n\n" + note + "\n"
