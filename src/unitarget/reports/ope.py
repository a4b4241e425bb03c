"""The off-policy evaluation report (``unitarget ope``): OPE.md and ope.json from an ``OPEResult``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from unitarget.evaluation.offpolicy import Estimate
from unitarget.io import atomic_write_json, atomic_write_text
from unitarget.studies.ope import OPEResult

OPE_JSON, OPE_MD = "ope.json", "OPE.md"


def ope_dict(result: OPEResult) -> dict[str, Any]:
    """The result as JSON types (``ope.json``): every estimate with its interval, n and ESS."""
    return {
        "source": result.source, "head": result.head, "impressions": result.impressions, "clicks": result.clicks,
        "candidates": result.candidates, "level": result.level, "n_resamples": result.n_resamples,
        "seed": result.seed,
        "policies": {v.policy: {"ips": v.ips.to_dict(), "snips": v.snips.to_dict(), "dr": v.dr.to_dict()}
                     for v in result.policies},
        "logged": {source: e.to_dict() for source, e in result.logged.items()},
        "notes": list(result.notes),
    }


def ope_markdown(result: OPEResult) -> str:
    """The report as Markdown (``OPE.md``): the target policies' estimated click rates, the logged
    policies' own rates to read them against, and what the estimates assume."""
    level = f"{result.level:.0%}"
    lines = [f"| target policy | estimator | click rate | {level} interval | ESS |", "| --- | --- | ---: | ---: | ---: |"]
    for value in result.policies:
        for name, estimate in (("IPS", value.ips), ("SNIPS", value.snips), ("DR", value.dr)):
            lines.append(f"| {value.policy} | {name} | {format_rate(estimate.estimate)} | {format_interval(estimate)} | "
                         f"{estimate.ess:,.0f} |")
    logged = [f"| logged policy (source) | impressions | click rate | {level} interval |",
              "| --- | ---: | ---: | ---: |"]
    logged += [f"| {source} | {e.n:,} | {format_rate(e.estimate)} | {format_interval(e)} |" for source, e in result.logged.items()]
    candidates = ", ".join(f"{key or '(all)'}: {k}" for key, k in result.candidates.items())
    parts = [
        f"# Off-policy evaluation on {result.source!r} impressions",
        f"{result.impressions:,} impressions, {result.clicks:,} with `stream` = 1; candidates per campaign: "
        f"{candidates}. The model policy ranks each impression's candidates by head `{result.head}`. "
        f"Intervals are bootstrap percentiles over {result.n_resamples:,} resamples of impressions "
        f"(seed {result.seed}); ESS is the effective sample size of the importance weights.",
        "\n".join(lines),
        "## Logged policies",
        "\n".join(logged),
        "## Reading it",
        "Each impression is one decision at its position: the model policy may choose the same show at "
        "several positions of one page. DR's reward model is the model itself, so DR is not independent "
        "of the policy it evaluates. The uniform-random target policy is the known-policy check: its IPS "
        f"value is the logged click rate of {result.source!r}. See docs/offpolicy.md.",
    ]
    if result.notes:
        parts.append("\n".join(f"- {note}" for note in result.notes))
    return "\n\n".join(parts) + "\n"


def format_rate(value: float) -> str:
    """A click rate as a percentage with four decimals; "—" for NaN."""
    return "—" if math.isnan(value) else f"{value:.4%}"


def format_interval(estimate: Estimate) -> str:
    """An estimate's interval as "[low, high]" percentages; "—" when it has none."""
    if math.isnan(estimate.low):
        return "—"
    return f"[{estimate.low:.4%}, {estimate.high:.4%}]"


def write_ope(result: OPEResult, out: Path) -> tuple[Path, Path]:
    """Write ``ope.json`` and ``OPE.md`` into ``out`` (created if needed), each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / OPE_JSON, ope_dict(result))
    atomic_write_text(out / OPE_MD, ope_markdown(result))
    return out / OPE_JSON, out / OPE_MD
