"""``unitarget ablate --study paper`` and ``reproduce --full``: the ablation study and the
new-objective learning curve, run and written as report sections."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from unitarget.config import Config
from unitarget.data.split import split_newest_days
from unitarget.io import atomic_write_text
from unitarget.pipeline import load_log
from unitarget.presets import Variant
from unitarget.reports.ablation import write_ablation_report
from unitarget.reports.new_objective import new_objective_section
from unitarget.studies.ablation import paper_variants, run_ablation
from unitarget.studies.new_objective import run_new_objective_study
from unitarget.tracking import NO_RUN, TrackedRun
from unitarget.training.hooks import SilentHooks, TrainingHooks

ABLATION_FILE = "ABLATION.md"


def ablation_sections(
    train_rows: pa.Table,
    test_rows: pa.Table,
    config: Config,
    *,
    runs_dir: Path,
    report_dir: Path,
    heading: str,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    learning_curve: bool = True,
    hooks_for: Callable[[str], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
    trained_runs: Mapping[tuple[str, int], Path] = {},
    tracking: TrackedRun = NO_RUN,
) -> list[str]:
    """Train (or reuse) every variant with every seed under ``runs_dir``, then the learning curve
    under ``report_dir/new_objective``; write their charts and CSV into ``report_dir`` and return
    the Markdown sections (the ablation tables under ``heading``, then the curve). Each trained (variant, seed) is a
    run nested in ``tracking``."""
    runs = run_ablation(train_rows, test_rows, runs_dir, config, variants=variants, seeds=seeds,
                        hooks_for=hooks_for, log=log, trained_runs=trained_runs, tracking=tracking)
    sections = [write_ablation_report(runs, report_dir, heading=heading)]
    if learning_curve:
        curve = run_new_objective_study(train_rows, test_rows, report_dir / "new_objective", config, log=log)
        sections.append(new_objective_section(curve, report_dir))
    return sections


def run_paper_study(
    data: str | Path | pa.Table,
    out_dir: Path,
    config: Config,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    variants: Sequence[Variant] | None = None,
    learning_curve: bool = True,
    hooks_for: Callable[[str], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
    tracking: TrackedRun = NO_RUN,
) -> Path:
    """Hold out the newest ``evaluation.test_days``, run every variant with every seed (and the
    new-objective learning curve), and write ``ABLATION.md`` with tables and charts into ``out_dir``;
    each (variant, seed) is a run nested in ``tracking``."""
    out_dir = Path(out_dir)
    table = load_log(data, config)
    testing = split_newest_days(table, config.evaluation.test_days, purpose="testing",
                                setting="evaluation.test_days")
    sections = ablation_sections(
        testing.older, testing.newest, config, runs_dir=out_dir, report_dir=out_dir,
        heading="# Ablations of the unified model (WSDM 2026, section 4)", variants=variants or paper_variants(),
        seeds=seeds, learning_curve=learning_curve, hooks_for=hooks_for, log=log, tracking=tracking,
    )
    report = out_dir / ABLATION_FILE
    atomic_write_text(report, "\n\n".join(sections) + "\n")
    return report
