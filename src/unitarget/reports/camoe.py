"""Tables and the report of the CAMoE study: AP per format and task over seeds, the Pareto front,
what each ablation changed, and what each encoder costs, rendered from the study's facts
(``studies.camoe_results``).

Every figure in the report is computed from the runs it is given; the sentences that judge them
(on the front or not, beyond the seed spread or not) are rules applied to those numbers, so a rerun
on another world or size writes its own verdict.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from unitarget.contract import AD_FORMATS
from unitarget.evaluation.formats import ALL_FORMATS
from unitarget.io import atomic_write_json, atomic_write_text
from unitarget.reports.pareto import pareto_chart
from unitarget.studies.camoe_arms import Arm
from unitarget.studies.camoe_results import (
    COLUMNS,
    ArmRun,
    Cell,
    StudyFacts,
    Summary,
    arm_parameters,
    click_points,
    facts_to_json,
    main_front,
    summarise,
    z_score,
)
from unitarget.studies.cost import Cost
from unitarget.studies.pareto import dominates, pareto_front


def _fmt(cell: Cell | None) -> str:
    if cell is None or not math.isfinite(cell.mean):
        return "—"
    return f"{cell.mean:.4f}" + (f" ± {cell.std:.4f}" if math.isfinite(cell.std) else "")


def results_table(summary: Summary, arms: Sequence[Arm],
                  front: Sequence[str], parameters: Mapping[str, int]) -> str:
    """Markdown: one row per arm, AP mean ± std over seeds per (label, format), then the oracle."""
    head = " | ".join(f"{label} {fmt}" for label, fmt in COLUMNS)
    lines = [f"| arm | {head} | parameters | on the front |",
             "| --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | :---: |"]
    for arm in arms:
        if arm.name not in summary:
            continue
        cells = summary[arm.name]
        name = f"{arm.display} (`{arm.name}`)"
        mark = "yes" if arm.name in front else ("—" if arm.name not in click_points(summary) else "no")
        lines.append(f"| {name} | " + " | ".join(_fmt(cells.get(c)) for c in COLUMNS)
                     + f" | {parameters.get(arm.name, 0):,} | {mark} |")
    oracle = next(iter(summary.values()), {})
    if any(math.isfinite(c.oracle) for c in oracle.values()):
        lines.append("| oracle (true probabilities) | "
                     + " | ".join(f"{oracle[c].oracle:.4f}" if c in oracle else "—" for c in COLUMNS)
                     + " | | |")
    return "\n".join(lines)


def results_csv(summary: Summary, arms: Sequence[Arm]) -> str:
    """One CSV row per (arm, label, format): the head scored, seeds, mean and standard deviation of AP over seeds, and
    oracle AP."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["arm", "display", "ablation", "label", "format", "task", "seeds", "ap_mean", "ap_std",
                     "oracle_ap"])
    for arm in arms:
        for (label, fmt), cell in summary.get(arm.name, {}).items():
            writer.writerow([arm.name, arm.display, arm.ablation, label, fmt, cell.task, cell.seeds,
                             f"{cell.mean:.6f}", f"{cell.std:.6f}", f"{cell.oracle:.6f}"])
    return buffer.getvalue()


def runs_csv(runs: Sequence[ArmRun]) -> str:
    """One CSV row per (arm, seed, label, format) of every run: the head, rows, positives, AP, oracle AP and the run's
    seconds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["arm", "seed", "label", "format", "task", "n", "n_pos", "ap", "oracle_ap", "seconds"])
    for run in runs:
        for row in run.rows:
            writer.writerow([run.arm, run.seed, row.label, row.format, row.task, row.n, row.n_pos,
                             f"{row.ap:.6f}", f"{row.oracle_ap:.6f}", f"{run.seconds:.1f}"])
    return buffer.getvalue()


def cost_table(costs: Sequence[Cost]) -> str:
    """Markdown table of what each encoder costs: parameters, training examples/s and prediction rows/s."""
    lines = ["| encoder | parameters | train examples/s | predict rows/s |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {c.display} (`{c.name}`) | {c.parameters:,} | {c.train_examples_per_s:,.0f} | "
              f"{c.predict_rows_per_s:,.0f} |" for c in costs]
    return "\n".join(lines)


def cost_csv(costs: Sequence[Cost]) -> str:
    """``cost_table`` as CSV, throughputs rounded to whole rows per second."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "display", "parameters", "train_examples_per_s", "predict_rows_per_s"])
    for c in costs:
        writer.writerow([c.name, c.display, c.parameters, round(c.train_examples_per_s),
                         round(c.predict_rows_per_s)])
    return buffer.getvalue()


def _deltas(summary: Summary, arm: str, other: str) -> str:
    """'audio +0.0012 (1.3 se), ...' for click AP of ``arm`` minus ``other``."""
    parts = []
    for fmt in (*AD_FORMATS, ALL_FORMATS):
        a, b = summary[arm].get(("click", fmt)), summary[other].get(("click", fmt))
        if a is None or b is None:
            continue
        z = z_score(a, b)
        parts.append(f"{fmt} {a.mean - b.mean:+.4f}" + (f" ({z:+.1f} se)" if math.isfinite(z) else ""))
    return ", ".join(parts)


def pareto_verdict(summary: Summary, main: Sequence[str], target: str = "camoe") -> str:
    """Whether ``target`` is on the front of the main arms' mean click AP per format, and by how much
    (in standard errors of the seed means) any arm that dominates it does so."""
    points = {a: p for a, p in click_points(summary).items() if a in main}
    if target not in points:
        return f"`{target}` was not run, so the front cannot be judged."
    front = pareto_front(points)
    if target in front:
        text = (f"**`{target}` is on the Pareto front** of mean click AP per format among "
                f"{', '.join(f'`{a}`' for a in points)}; the front is {', '.join(f'`{a}`' for a in front)}.")
        beats = [a for a in points if a != target and dominates(points[target], points[a])]
        if beats:
            text += f" It dominates {', '.join(f'`{a}`' for a in beats)} on the means."
        return text + " " + _noise_note(summary, [a for a in points if a != target], target)
    dominators = [a for a in points if dominates(points[a], points[target])]
    lines = [f"**`{target}` is not on the Pareto front** of mean click AP per format; the front is "
             f"{', '.join(f'`{a}`' for a in front)}. Dominated by:"]
    for arm in dominators:
        zs = [z_score(summary[arm][("click", f)], summary[target][("click", f)]) for f in AD_FORMATS]
        beyond = all(math.isfinite(z) and z > 2 for z in zs)
        lines.append(f"- `{arm}` ({_deltas(summary, arm, target)}): "
                     + ("beyond the seed spread on every format." if beyond else
                        "within two standard errors of the seed means on at least one format, so "
                        "CAMoE is *near* the front at this size rather than clearly behind it."))
    return "\n".join(lines)


def _noise_note(summary: Summary, others: Sequence[str], target: str) -> str:
    """Which arms differ from ``target`` beyond two standard errors on some format, and which not."""
    apart, close = [], []
    for arm in others:
        zs = [z_score(summary[arm][("click", f)], summary[target][("click", f)]) for f in AD_FORMATS]
        (apart if any(math.isfinite(z) and abs(z) > 2 for z in zs) else close).append(f"`{arm}`")
    if not apart and not close:
        return ""
    parts = []
    if apart:
        parts.append(f"{', '.join(apart)} differ{'s' if len(apart) == 1 else ''} from it by more than two "
                     "standard errors on at least one format")
    if close:
        parts.append(f"{', '.join(close)} {'is' if len(close) == 1 else 'are'} within two standard errors on "
                     "every format, so the front among them is not resolved at this size")
    return "Against the seed spread: " + "; ".join(parts) + "."


def ablation_lines(summary: Summary, pairs: Sequence[tuple[str, str, str]]) -> list[str]:
    """One line per (arm, reference, what it isolates): click AP differences per format."""
    return [f"- {what} (`{arm}` − `{ref}`): {_deltas(summary, arm, ref)}"
            for arm, ref, what in pairs if arm in summary and ref in summary]


#: (arm, reference, what the difference isolates), for the "why" section.
ABLATIONS: tuple[tuple[str, str, str], ...] = (
    ("mtl-pooled", "single-task", "one model for all formats instead of one per format"),
    ("mtl-per-format", "mtl-pooled", "per-format heads (with the format mask) instead of one click head"),
    ("mmoe", "mtl-per-format", "shared experts and per-task gates instead of a shared bottom"),
    ("ple", "mmoe", "task-specific experts and a second level (PLE) instead of MMoE"),
    ("camoe-no-cross", "mmoe", "experts per modality group besides the shared ones (one level, no crosses)"),
    ("camoe", "camoe-no-cross", "DCN-v2 cross layers"),
    ("camoe", "camoe-no-experts", "experts and gates (shared and per group) over a shared bottom, both with crosses"),
    ("camoe", "camoe-no-mask", "the format mask"),
    ("camoe-experts-2-1", "camoe", "fewer experts (2 shared + 1 per group)"),
    ("camoe-experts-8-2", "camoe", "more experts (8 shared + 2 per group)"),
    ("camoe-groups-placement", "camoe", "groups in-stream (audio + video) and display, not audio and visual"),
)

_WHY = """\
How to read these lines: each is the click AP of the first arm minus the second, per format and
on all formats pooled (each impression scored by its own format's head), with the difference in
standard errors of the seed means in brackets (|z| < 2: within the seed spread).

What the synthetic world predicts (docs/synthetic-world.md): the formats differ by a click
intercept (audio −0.5, video +0.1, display 0 on the logit), a format and slot effect in the
channel term, and a per-user propensity for each format (sd 0.4); affinity, user engagement,
quality, context and popularity act identically on every format. So the world rewards sharing
rows across formats (the small formats borrow the shared signal), and its only format-specific
structure beyond additive terms is one interaction, user × format: a cross layer forms it
explicitly (x₀ ⊙ W x multiplies the user's embedding with the format's), an MLP only approximates
it from enough rows. There is no format whose click depends on the features in a different way,
which is what per-format heads, gated experts and modality groups are built for."""


def spread_line(summary: Summary, arms: Sequence[str]) -> str:
    """How far apart the given arms are on pooled click AP, against the seed spread."""
    key = ("click", ALL_FORMATS)
    cells = {a: summary[a][key] for a in arms if key in summary.get(a, {})}
    if len(cells) < 2:
        return ""
    low, high = min(cells, key=lambda a: cells[a].mean), max(cells, key=lambda a: cells[a].mean)
    stds = [c.std for c in cells.values() if math.isfinite(c.std)]
    spread = f"; the median seed standard deviation is {np.median(stds):.4f}" if stds else ""
    return (f"Click AP on all formats of the multi-task arms ranges from {cells[low].mean:.4f} (`{low}`) to "
            f"{cells[high].mean:.4f} (`{high}`), {100 * (cells[high].mean / cells[low].mean - 1):.1f} % apart"
            f"{spread}.")


def render_camoe_report(facts: StudyFacts, summary: Summary, front: Sequence[str]) -> str:
    """CAMOE.md: the data and split, AP per format and task over seeds, the Pareto verdict among the main arms, what
    each ablation changed and each encoder's cost, all computed from ``facts``."""
    main = [a.name for a in facts.arms if not a.ablation]
    epochs = facts.config.train.max_epochs
    size = (f"{facts.sampled_rows:,} training-day ad impressions sampled uniformly from a log of "
            f"{facts.log_rows:,} impressions, every ad impression of the test days"
            if facts.sampled_rows else f"every ad impression of a log of {facts.log_rows:,} impressions")
    lines = [
        "# CAMoE study: per-format CTR across audio, video and display (KDD 2025)",
        "",
        f"Data: {size}; {facts.split['fit']:,} impressions to fit, {facts.split['validation']:,} "
        f"(newest {facts.config.train.valid_days:g} training days) to select the epoch on mean click AP "
        f"per format, {facts.split['test']:,} (newest {facts.config.evaluation.test_days:g} days) to test. "
        f"Seeds {', '.join(map(str, facts.seeds))}; at most {epochs} epochs of batch "
        f"{facts.config.train.batch_size:,}. Run time {facts.seconds / 60:.1f} min on {facts.machine}.",
        "",
        "## AP per format and task (test days, mean ± standard deviation over seeds)",
        "",
        "Each format's impressions are scored by the head that serves that format "
        "(`evaluation.heads.head_for`); `all` pools them. The single-task arm is three models.",
        "",
        results_table(summary, facts.arms, front, arm_parameters(facts.runs)),
        "",
        "![click AP of one format against another](camoe_pareto.png)",
        "",
        "## Is CAMoE on the Pareto front?",
        "",
        pareto_verdict(summary, main),
        "",
        "## Why: what each change did to click AP",
        "",
        *ablation_lines(summary, ABLATIONS),
        "",
        spread_line(summary, [a for a in main if a != "single-task"]),
        "",
        _WHY,
        "",
        "## Cost (same rows, this machine)",
        "",
        cost_table(facts.costs),
        "",
        "Training examples/s over a few dozen steps of the training loop's step; prediction rows/s "
        "over up to 100,000 rows in 8,192-row slices. Measured while the study ran, on a shared "
        "machine: compare rows with each other, not with docs/benchmarks.md.",
    ]
    return "\n".join(lines) + "\n"


def write_camoe_outputs(facts: StudyFacts, out_dir: str | Path) -> Path:
    """Write the report, tables, chart and cost table; return the report's path."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "camoe_facts.json", facts_to_json(facts))  # first: re-render from it
    summary = summarise(facts.runs)
    main = [a.name for a in facts.arms if not a.ablation]
    front = main_front(summary, main)
    table = results_table(summary, facts.arms, front, arm_parameters(facts.runs))
    atomic_write_text(out_dir / "camoe_table.md", table + "\n")
    atomic_write_text(out_dir / "camoe_table.csv", results_csv(summary, facts.arms))
    atomic_write_text(out_dir / "camoe_runs.csv", runs_csv(facts.runs))
    atomic_write_text(out_dir / "camoe_cost.md", cost_table(facts.costs) + "\n")
    atomic_write_text(out_dir / "camoe_cost.csv", cost_csv(facts.costs))
    points = click_points(summary)
    mean = {a: dict(zip(AD_FORMATS, p)) for a, p in points.items()}
    std = {a: {f: summary[a][("click", f)].std if math.isfinite(summary[a][("click", f)].std) else 0.0
               for f in AD_FORMATS} for a in points}
    pareto_chart(mean, std, AD_FORMATS, out_dir / "camoe_pareto.png", highlight=main,
                 labels={a.name: a.name for a in facts.arms},
                 title="Click AP per format (test days); filled: main arms, hollow: ablations; "
                       "dashed: 2-D front")
    report = out_dir / "CAMOE.md"
    atomic_write_text(report, render_camoe_report(facts, summary, front))
    return report
