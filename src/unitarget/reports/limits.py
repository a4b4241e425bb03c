"""Information limits per popularity tier: each setup's AP beside what the data allow and the ceiling.

Per segment (all rows, each tier, the less-streamed and high-stream groups) a table gives each
setup's AP, the informed oracle's AP (``evaluation.informed``: the world's truth with each show's
own effects known only through the impressions logged before the test days), the full oracle's AP
(the true probabilities), then the oracle ratio AP / oracle AP of each setup and of the informed
oracle. Where a setup's ratio is far below the informed oracle's, the missing gain is the model's;
where the informed oracle's ratio is low too, the data do not hold it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from unitarget.evaluation import LESS_STREAMED, SEGMENTS, EvaluationResult, segment_label


def _cell(value: float, digits: int = 4) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _ratio(value: float, oracle: float) -> float:
    return value / oracle if oracle > 0 and not math.isnan(value) else float("nan")


def tier_limits_markdown(results: Mapping[str, EvaluationResult], target: str, setups: Sequence[str],
                         labels: Mapping[str, str] | None = None) -> str:
    """The table of the module docstring for ``target`` (e.g. ``ads_stream``) and the ``setups`` among
    ``results`` (all evaluated on the same rows, so the oracles' APs are any result's)."""
    labels = labels or {}
    setups = [s for s in setups if s in results and target in results[s].targets]
    if not setups:
        return ""
    reference = results[setups[0]]
    names = [labels.get(s, s) for s in setups]
    header = (["segment", "positives"] + [f"{n} AP" for n in names] + ["informed oracle AP", "oracle AP"]
              + [f"{n} / oracle" for n in names] + ["informed / oracle"])
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for segment in SEGMENTS:
        row = reference.row(target, segment)
        aps = [results[s].ap(target, segment) for s in setups]
        cells = [segment_label(segment), f"{row.n_pos:,}", *map(_cell, aps), _cell(row.informed_oracle_ap),
                 _cell(row.oracle_ap), *(_cell(_ratio(ap, row.oracle_ap), 3) for ap in aps),
                 _cell(_ratio(row.informed_oracle_ap, row.oracle_ap), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _reading(results[setups[0]], target, names[0])


def _reading(result: EvaluationResult, target: str, name: str) -> str:
    """One sentence on the less-streamed tiers: how much of the ceiling the data allow and the model takes."""
    row = result.row(target, LESS_STREAMED)
    allowed, reached = _ratio(row.informed_oracle_ap, row.oracle_ap), _ratio(row.ap, row.oracle_ap)
    if math.isnan(allowed) or math.isnan(reached):
        return ""
    share = reached / allowed if allowed > 0 else float("nan")
    return (f"On the less-streamed tiers the impressions before the test days allow {allowed:.0%} of the oracle's "
            f"AP; {name} reaches {reached:.0%}, i.e. {share:.0%} of what the data allow.")
