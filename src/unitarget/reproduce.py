"""The main job: the paper's offline study (Table 1 and AP by tier) on the synthetic world.

Generate the world -> hold out the newest days as the test split -> train each Table 1 setup and the
linear baseline (``logreg``) on the same older days (each holds out its own newest days for early
stopping) -> evaluate all setups on
the same test rows -> simulate the online A/B test (Table 2) on the test days -> write ``REPORT.md``
with the figures measured in this run.

Like ``unitarget.experiments``, this module belongs to the experiments layer: it runs studies and
writes their reports, and nothing but the CLI imports it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import torch

from unitarget.config import Config
from unitarget.data.split import split_newest_days
from unitarget.experiments.ablation import ablation_sections
from unitarget.evaluation.informed import InformedOracle
from unitarget.experiments.simulation import run_paper_ab
from unitarget.io import atomic_write_text, read_log
from unitarget.pipeline import load_log
from unitarget.presets import BASELINE_PRESET, DIAGNOSTICS, LINEAR_BASELINE, TABLE1_ORDER, Variant, apply_preset
from unitarget.reports.reproduction import ReproductionFacts, render_report
from unitarget.simulation import SimulationResult
from unitarget.studies.ablation import paper_variants
from unitarget.studies.table1 import run_setups
from unitarget.synth import World, WorldParams, write_synthetic_dataset
from unitarget.training.hooks import SilentHooks, TrainingHooks

REPORT_FILE = "REPORT.md"


def reproduce(
    out: Path,
    params: WorldParams,
    config: Config,
    *,
    presets: Sequence[str] = (*TABLE1_ORDER, LINEAR_BASELINE),
    diagnostics: Mapping[str, Variant] = DIAGNOSTICS,
    full: bool = False,
    seeds: int = 3,
    hooks_for: Callable[[str], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Run the main job into ``out`` and return the path of its ``REPORT.md``. ``diagnostics``
    maps a run name to the variant trained under it beside the Table 1 ``presets`` (the linear
    baseline among them is reported as a reference row)."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_rows, test_rows, synth_seconds = _world(out, params, config, log)
    setups = {p: apply_preset(config, p) for p in presets}
    setups |= {name: variant.setup(config) for name, variant in diagnostics.items()}
    log("fitting the informed oracle on the training days (what they tell of each show)")
    informed = InformedOracle.fit(World.load(out / "data" / "world"), train_rows)
    runs = run_setups(train_rows, test_rows, out, setups, hooks_for=hooks_for, log=log, informed=informed)
    ab = _online_test(out, setups, config, log)
    extra_sections = (_full_study(train_rows, test_rows, out, config, presets, diagnostics, seeds, hooks_for, log)
                      if full else [])
    facts = ReproductionFacts(
        params=params,
        results={k: v for k, v in runs.results.items() if k not in diagnostics},
        diagnostics={k: v for k, v in runs.results.items() if k in diagnostics},
        training=runs.training,
        baseline=BASELINE_PRESET,
        linear=LINEAR_BASELINE if LINEAR_BASELINE in presets else None,
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


def _world(out: Path, params: WorldParams, config: Config,
           log: Callable[[str], None]) -> tuple[pa.Table, pa.Table, float]:
    """Generate the world into ``out/data``; its log split into training and test rows, and the
    seconds the generation took."""
    log(f"generating the synthetic world ({params.n_impressions:,} impressions, {params.n_days} days)")
    t0 = time.perf_counter()
    log_path = write_synthetic_dataset(out / "data", params)
    synth_seconds = time.perf_counter() - t0
    table = load_log(read_log(log_path), config)
    testing = split_newest_days(table, config.evaluation.test_days, purpose="testing",
                                setting="evaluation.test_days")
    log(f"{testing.older.num_rows:,} impressions for training, {testing.newest.num_rows:,} (newest "
        f"{testing.days:g} days) for testing")
    return testing.older, testing.newest, synth_seconds


def _online_test(out: Path, setups: Mapping[str, Config], config: Config,
                 log: Callable[[str], None]) -> SimulationResult | None:
    """The paper's online test (Table 2), when both of its arms were trained."""
    if not {BASELINE_PRESET, "unified"} <= set(setups):
        return None
    log(f"simulating the online budget-split A/B test: {BASELINE_PRESET} vs unified, oracle, random")
    return run_paper_ab(out, out / "runs" / BASELINE_PRESET, out / "runs" / "unified", config.simulate, log=log)


def _full_study(train_rows: pa.Table, test_rows: pa.Table, out: Path, config: Config, presets: Sequence[str],
                diagnostics: Mapping[str, Variant], seeds: int, hooks_for: Callable[[str], TrainingHooks],
                log: Callable[[str], None]) -> list[str]:
    """``--full``: every ablation with ``seeds`` seeds, then the new-objective learning curve."""
    # The main job's runs are seed config.train.seed of the same-named variants, and each
    # diagnostic of its variant. run_ablation reuses each one whose configuration matches exactly.
    main_runs = {name: out / "runs" / name for name in presets}
    main_runs |= {variant.name: out / "runs" / name for name, variant in diagnostics.items()}
    trained_runs = {(name, config.train.seed): path for name, path in main_runs.items()}
    return ablation_sections(
        train_rows, test_rows, config, runs_dir=out / "ablation", report_dir=out,
        heading="## Ablations (all switches, several seeds)", variants=paper_variants(), seeds=range(seeds),
        hooks_for=hooks_for, log=log, trained_runs=trained_runs,
    )
