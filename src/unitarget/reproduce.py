"""The main job: the paper's offline study (Table 1 and AP by tier) on the synthetic world.

Generate the world -> hold out the newest days as the test split -> train each Table 1 setup on the
same older days (each holds out its own newest days for early stopping) -> evaluate all setups on
the same test rows -> simulate the online A/B test (Table 2) on the test days -> write ``REPORT.md``
with the figures measured in this run.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from unitarget.config import Config, merge
from unitarget.data.split import split_newest_days
from unitarget.evaluation import EvaluationResult
from unitarget.io import atomic_write_json, atomic_write_text, read_log
from unitarget.pipeline import load_log, train
from unitarget.presets import BASELINE_PRESET, TABLE1_ORDER, apply_preset
from unitarget.reports.reproduction import ReproductionFacts, render_report
from unitarget.synth import WorldParams, write_synthetic_dataset
from unitarget.training.loop import SilentHooks, TrainingHooks

REPORT_FILE = "REPORT.md"

#: Variants trained beside Table 1 to explain its result, each a preset plus overrides. Balanced
#: batches revisit the smaller source several times per epoch; the natural mix shows what that costs.
DIAGNOSTICS: dict[str, tuple[str, dict]] = {
    "unified-natural-mix": ("unified", {"sampling": {"balanced": False}}),
}


def reproduce(
    out: Path,
    params: WorldParams,
    config: Config,
    *,
    presets: Sequence[str] = TABLE1_ORDER,
    diagnostics: dict[str, tuple[str, dict]] = DIAGNOSTICS,
    full: bool = False,
    seeds: int = 3,
    hooks_for: Callable[[str], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    log(f"generating the synthetic world ({params.n_impressions:,} impressions, {params.n_days} days)")
    t0 = time.perf_counter()
    log_path = write_synthetic_dataset(out / "data", params)
    synth_seconds = time.perf_counter() - t0
    table = load_log(read_log(log_path), config)
    train_rows, test_rows = split_newest_days(table, config.evaluation.test_days, purpose="testing")
    log(f"{train_rows.num_rows:,} impressions for training, {test_rows.num_rows:,} (newest "
        f"{config.evaluation.test_days:g} days) for testing")

    results: dict[str, EvaluationResult] = {}
    training: dict[str, dict] = {}
    setups = {p: apply_preset(config, p) for p in presets}
    setups |= {name: merge(apply_preset(config, preset), overrides) for name, (preset, overrides) in diagnostics.items()}
    for name, setup in setups.items():
        run_dir = out / "runs" / name
        log(f"training {name}")
        trained = train(train_rows, run_dir, setup, hooks=hooks_for(name))
        results[name] = trained.evaluate(test_rows)
        training[name] = trained.record.to_dict()
        atomic_write_json(out / "evaluations" / f"{name}.json", results[name].to_dict())

    ab = None
    if {BASELINE_PRESET, "unified"} <= set(setups):  # the paper's online test: Table 2
        from unitarget.simulation.paper import run_paper_ab

        log(f"simulating the online budget-split A/B test: {BASELINE_PRESET} vs unified, oracle, random")
        ab = run_paper_ab(out, out / "runs" / BASELINE_PRESET, out / "runs" / "unified", config.simulate, log=log)

    extra_sections = _full_study(train_rows, test_rows, out, config, seeds, hooks_for, log) if full else []
    facts = ReproductionFacts(
        params=params,
        results={k: v for k, v in results.items() if k not in diagnostics},
        diagnostics={k: v for k, v in results.items() if k in diagnostics},
        training=training,
        baseline=BASELINE_PRESET,
        train_rows=train_rows,
        test_rows=test_rows,
        ab=ab,
        synth_seconds=synth_seconds,
        total_seconds=time.perf_counter() - started,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
                f"({torch.get_num_threads()} threads)",
    )
    report = out / REPORT_FILE
    atomic_write_text(report, render_report(facts, out, extra_sections))
    return report


def _full_study(train_rows, test_rows, out: Path, config: Config, seeds: int,
                hooks_for: Callable[[str], TrainingHooks], log: Callable[[str], None]) -> list[str]:
    """``--full``: every ablation with ``seeds`` seeds, then the new-objective learning curve."""
    from unitarget.reports.ablation import write_ablation_report
    from unitarget.reports.new_objective import new_objective_section
    from unitarget.studies.ablation import paper_variants, run_ablation
    from unitarget.studies.new_objective import run_new_objective_study

    # The main job's runs are seed config.train.seed of the same-named variants; the diagnostic is
    # the natural-mix variant. run_ablation reuses each one whose configuration matches exactly.
    main_runs = {name: out / "runs" / name for name in TABLE1_ORDER}
    main_runs["natural-mix"] = out / "runs" / "unified-natural-mix"
    trained_runs = {(name, config.train.seed): path for name, path in main_runs.items()}
    runs = run_ablation(train_rows, test_rows, out / "ablation", config, variants=paper_variants(),
                        seeds=range(seeds), hooks_for=hooks_for, log=log, trained_runs=trained_runs)
    curve = run_new_objective_study(train_rows, test_rows, out / "new_objective", config, log=log)
    return [write_ablation_report(runs, out, heading="## Ablations (all switches, several seeds)"),
            new_objective_section(curve, out)]
