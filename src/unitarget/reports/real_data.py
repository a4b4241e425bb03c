"""``docs/real-data.md``: the real-data study's tables (AP with intervals per setup and channel)
and, for a logged-bandit dataset, the off-policy estimates."""

from __future__ import annotations

import math
from collections.abc import Sequence

from unitarget.evaluation.offpolicy import Estimate
from unitarget.presets import display_name
from unitarget.reports.ope import format_interval, format_rate
from unitarget.studies.ope import GREEDY, UNIFORM, OPEResult
from unitarget.studies.real_data import RealDataResult, ScoredTarget

#: the channel targets, in the order the tables show them
TARGET_TITLES = {"promotions_stream": "Promotions AP (stream on promotions)",
                 "ads_stream": "Ads AP (stream on ads)", "click": "click AP (all rows)"}


def _cell(score: ScoredTarget | None) -> str:
    if score is None or math.isnan(score.ap.estimate):
        return "—"
    return f"{score.ap.estimate:.4f} [{score.ap.low:.4f}, {score.ap.high:.4f}]"


def scores_table(result: RealDataResult) -> str:
    """One row per setup, one column per channel target (AP [95 % interval])."""
    targets = [t for t in TARGET_TITLES if any(t in s for s in result.scores.values())]
    targets += sorted({t for s in result.scores.values() for t in s} - set(targets))
    lines = ["| setup | " + " | ".join(TARGET_TITLES.get(t, f"{t} AP") for t in targets) + " |",
             "| --- |" + " ---: |" * len(targets)]
    for setup in result.setups:
        cells = [_cell(result.scores[setup].get(t)) for t in targets]
        lines.append(f"| {display_name(setup)} (`{setup}`) | " + " | ".join(cells) + " |")
    counts = {t: next(s[t] for s in result.scores.values() if t in s) for t in targets}
    lines.append("| *random ranking (the positive rate)* | " + " | ".join(f"{c.positives / c.rows:.4f}"
                                                                         for c in counts.values()) + " |")
    lines.append("| *test rows / positives* | " + " | ".join(f"{c.rows:,} / {c.positives:,}"
                                                            for c in counts.values()) + " |")
    return "\n".join(lines)


def verdicts(result: RealDataResult, *, model: str = "unified", others: tuple[str, ...] = ()) -> list[str]:
    """For each target, whether ``model`` is told apart from each other setup by this log: its
    interval entirely above (better), entirely below (worse), or overlapping (not told apart)."""
    lines = []
    mine = result.scores.get(model, {})
    for target, score in mine.items():
        for other in others:
            theirs = result.scores.get(other, {}).get(target)
            if theirs is None:
                continue
            if score.ap.low > theirs.ap.high:
                verdict = "better (intervals do not overlap)"
            elif score.ap.high < theirs.ap.low:
                verdict = "worse (intervals do not overlap)"
            else:
                diff = score.ap.estimate - theirs.ap.estimate
                verdict = f"not told apart (difference {diff:+.4f}, intervals overlap)"
            lines.append(f"- {TARGET_TITLES.get(target, target)}: `{model}` vs `{other}`: {verdict}")
    return lines


def split_line(result: RealDataResult) -> str:
    """How the log was split, including the short-log rule's note when it applied."""
    split = result.split
    by_source = ", ".join(f"{n:,} {s}" for s, n in sorted(split["test_rows_by_source"].items()))
    text = (f"Training on {split['train_rows']:,} impressions, testing on the newest {split['days']:g} days: "
            f"{split['test_rows']:,} impressions ({by_source}).")
    if split.get("note"):
        text += f" The log spans {split['span_days']:.2f} days, so the short-log rule set the test window " \
                f"(the configured {split['configured_days']:g} days would have held out most of it)."
    return text


#: what the comparison lines compare the unified model against, per dataset section
COMPARED = ("promo-stream-only", "ads-stream-only", "logreg")


def _estimate(value: Estimate) -> str:
    return f"{format_rate(value.estimate)} {format_interval(value)}"


def ope_table(setups: Sequence[str], estimates: Sequence[OPEResult]) -> str:
    """Each setup's greedy policy by IPS, SNIPS and DR; the uniform-random check; the logged rates."""
    lines = ["| target policy on the `ads` (uniform-random) test rows | IPS | SNIPS | DR | ESS |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for setup, result in zip(setups, estimates):
        for value in result.policies:
            if value.policy == UNIFORM and setup != setups[0]:
                continue  # the same for every model
            name = f"greedy on `{setup}`'s `{result.head}`" if value.policy == GREEDY else value.policy
            lines.append(f"| {name} | {_estimate(value.ips)} | {_estimate(value.snips)} | {_estimate(value.dr)} | "
                         f"{value.ips.ess:,.0f} |")
    for source, value in estimates[0].logged.items():
        lines.append(f"| logged policy of `{source}` (on-policy mean of its test rows) | {_estimate(value)} | | | "
                     f"{value.n:,} |")
    return "\n".join(lines)


def dataset_section(result: RealDataResult, estimates: Sequence[OPEResult], setups: Sequence[str]) -> str:
    """One dataset: the split, the AP table, what the intervals tell apart, the OPE estimates."""
    parts = [f"## {result.dataset}", split_line(result), scores_table(result),
             "\n".join(verdicts(result, others=tuple(s for s in COMPARED if s in result.scores)))]
    if estimates:
        parts += [f"### Off-policy click rate ({estimates[0].impressions:,} test impressions of the uniform-random "
                  f"log, {estimates[0].clicks} clicks)", ope_table(setups, estimates)]
        notes = sorted({note for e in estimates for note in e.notes})
        if notes:
            parts.append("\n".join(f"- {note}" for note in notes))
    return "\n\n".join(part for part in parts if part)


def real_data_markdown(studies: Sequence[tuple[RealDataResult, Sequence[OPEResult]]], *, setups: Sequence[str],
                       resamples: int, seed: int) -> str:
    """The generated part of ``docs/real-data.md``."""
    head = (f"# Results on real public logs\n\nGenerated by `unitarget datasets report` (seed {seed}; AP intervals "
            f"are 95 % percentile bootstrap intervals over {resamples:,} resamples of the test rows; one training "
            "seed per setup, so the intervals hold the test sampling, not the training noise). Every setup is "
            "trained with the default configuration and its preset, nothing tuned to these logs.")
    return "\n\n".join([head, *(dataset_section(r, e, setups) for r, e in studies)]) + "\n"
