"""The paper's Table 1: AP of each model setup relative to the promotions-only baseline.

Rows are model setups; "Promotions AP" is the ``promotions_stream`` target (``promo_stream`` on
promotion impressions) and "Ads AP" the ``ads_stream`` target (``ad_stream`` on ad impressions),
each shown as the relative change (AP - AP_baseline) / AP_baseline, e.g. "+4.5%" / "−7.9%". The
absolute APs follow in extra columns so a reader can check the arithmetic. A linear reference model
(the ``logreg`` preset) is the last row, labelled as such; ``beats_linear_markdown`` says, head by
head, which setups beat it.
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
    linear: str | None = None,
) -> str:
    """Markdown Table 1: relative Promotions/Ads AP change of each setup against ``baseline``.

    Args:
        results: setup key -> its evaluation on the test split (same rows for every setup).
        baseline: key of the reference setup; listed first, marked "(baseline)".
        labels: setup key -> display name (e.g. "promo-stream-only" -> "Promo Stream head-only").
        paper: the paper's relative changes as fractions (see ``unitarget.presets.PAPER_TABLE1``), looked up by
            setup key, then by display name; adds "paper" columns beside the measured ones.
        linear: key of the linear baseline, if among ``results``: listed last, marked "(linear baseline)".
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

    last = [linear] if linear in results else []
    for key in [baseline, *(k for k in results if k not in (baseline, *last)), *last]:
        name = labels.get(key, key) + (" (linear baseline)" if key == linear else "")
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


def beats_linear_markdown(results: Mapping[str, EvaluationResult], linear: str,
                          labels: Mapping[str, str] | None = None) -> str:
    """Head by head, whether each setup's AP beats the linear baseline ``linear`` on the same test rows: a table of
    "beats"/"does not beat" with the relative change, then one line per setup that does not beat it on some head,
    naming those heads (so a deep model that logistic regression matches says so)."""
    labels = labels or {}
    reference = results[linear]
    heads = reference.targets
    lines = ["| Setup | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
    losses: dict[str, list[str]] = {}
    for key in (k for k in results if k != linear):
        cells = []
        for head in heads:
            change = relative_change(_ap(results[key], head), reference.ap(head))
            if math.isnan(change):
                cells.append("—")
                continue
            beats = change > 0
            cells.append(f"{'beats' if beats else '**does not beat**'} ({format_relative(change)})")
            if not beats:
                losses.setdefault(key, []).append(head)
        lines.append(f"| {labels.get(key, key)} | " + " | ".join(cells) + " |")
    name = labels.get(linear, linear)
    verdicts = [f"- {labels.get(k, k)} does not beat {name} on {', '.join(h)}." for k, h in losses.items()]
    summary = "\n".join(verdicts) if verdicts else f"Every setup beats {name} on every head it has."
    note = (f"Relative change of each setup's AP against **{name}** (hashed one-hot features and pairwise crosses, "
            "one logistic model per task, the unified tasks and masks), head by head on the same test rows; "
            "— where the setup has no head for that target.")
    return "\n".join(lines) + "\n\n" + note + "\n\n" + summary
