"""Robustness of the defaults: a family of synthetic worlds, each setup trained over several seeds.

    python benchmarks/robustness.py [--out /tmp/robustness] [--doc docs/robustness.md]
                                    [--setup unified --setup logreg --setup "unified:train.patience=3"]
                                    [--seeds 3] [--worlds small-default,promo-heavy] [--threads 2] [--quick]

One defaults-tuned world says little about the defaults; this draws the worlds of ``WORLDS`` from
the generator (never changing the generator: only ``WorldParams`` and its ``LabelModel``), each
with its own seed, size, source mix and knobs. For every world it holds out the newest
``evaluation.test_days`` as ``reproduce`` does, trains each ``--setup`` (a preset name, or a preset
with ``key=value`` configuration overrides: ``presets.parse_variant``) with every seed through the
ablation study's machinery (``studies.ablation.run_ablation``), and records per head its
**validation** AP (the selected model on the training log's newest ``train.valid_days``: what a
default must be chosen on) and its **test** AP, the oracle's AP and the informed oracle's
(``evaluation.informed``: what the training days allow).

Each (world, setup, seed) cell is written to ``--out/cells/<world>/<setup>/seed<k>.json`` as soon as
it finishes, and a rerun skips the cells already there (with the same world spec, setup, resolved
configuration and ``--quick``), so an interrupted run resumes. The summary (per world and head: mean ± standard
deviation over seeds of each setup, oracle ratio, paired gap to ``logreg`` and whether it is beyond
two standard errors of the paired seed differences) is printed and written to ``--doc``.
``--quick`` draws tiny worlds and trains small models: a smoke test, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from unitarget.config import Config, merge
from unitarget.data.split import split_newest_days
from unitarget.evaluation import EvaluationResult
from unitarget.evaluation.informed import InformedOracle
from unitarget.evaluation.segments import ALL
from unitarget.io import atomic_write_json, atomic_write_text, read_log
from unitarget.pipeline import load_log, load_model, split_training_log
from unitarget.presets import LINEAR_BASELINE, Variant, parse_variant
from unitarget.studies.ablation import AblationRun, ablation_run_dir, paired_change, run_ablation
from unitarget.synth import LabelModel, World, WorldParams, write_synthetic_dataset

HEADS = ("promotions_stream", "ads_stream", "click", "like", "follow")
DEFAULT_SETUPS = ("unified", LINEAR_BASELINE)


@dataclass(frozen=True)
class WorldSpec:
    """One world of the family: size, seed and the knobs it turns away from the default world."""

    name: str
    impressions: int
    users: int
    shows: int
    days: int
    seed: int
    ads_share: float  # share of impressions that are ads (the rest promotions)
    taste: float = 1.0  # multiplier on the affinity's weight in every conditional logit
    idiosyncratic: float = 1.0  # multiplier on the sd of show, publisher and creative quality (no feature shows them)
    popularity_sd: float = 1.3  # spread of log10 30-day streams (popularity skew)
    popularity_exponent: float = 0.3  # impressions per show ∝ (1 + streams) ** this
    new_shows: float = 0.15  # shows launching during the period (cold start)
    #: ``--earlier-days``: the log's newest days left out before the test days are held out, so the test days are
    #: earlier ones (with ``train.valid_days``: the full log's validation days, where a training protocol that trains
    #: on its own validation days, ``train.refit``, can be chosen without reading the test days)
    earlier_days: float = 0.0

    @property
    def label(self) -> str:
        """The world's name in cells, runs and tables (the log's own directory is ``name``'s)."""
        return self.name if not self.earlier_days else f"{self.name}-{self.earlier_days:g}d-earlier"

    def params(self, quick: bool) -> WorldParams:
        """The world's ``WorldParams`` (``quick``: the same knobs on a tiny world)."""
        lm = LabelModel()
        scaled = {f"{c}_weights": (getattr(lm, f"{c}_weights")[0] * self.taste, *getattr(lm, f"{c}_weights")[1:])
                  for c in ("click", "stream_click", "stream_no_click", "like", "follow")}
        labels = replace(lm, **scaled, show_quality_sd=lm.show_quality_sd * self.idiosyncratic,
                         publisher_quality_sd=lm.publisher_quality_sd * self.idiosyncratic,
                         creative_quality_sd=lm.creative_quality_sd * self.idiosyncratic)
        sizes = (dict(n_impressions=20_000, n_users=600, n_shows=120, n_days=21) if quick else
                 dict(n_impressions=self.impressions, n_users=self.users, n_shows=self.shows, n_days=self.days))
        return WorldParams(**sizes, seed=self.seed, ads_share=self.ads_share, log10_streams_sd=self.popularity_sd,
                           popularity_exponent=self.popularity_exponent, new_show_fraction=self.new_shows,
                           labels=labels)


#: The family. Sizes 200 K – 2 M impressions, most near the small end, so that the two default
#: setups at three seeds run in well under an hour on two cores (a 200 K cell took about 10 s of
#: training, its world and informed oracle 14 s, on two shared cores); knobs within plausible ranges
#: around the default world (docs/synthetic-world.md): taste ×0.6–1.4, idiosyncratic effects
#: ×0.7–1.5, popularity spread 1.0–1.6 and exponent 0.2–0.5, new shows 5–30 %, ads 60–90 %.
WORLDS: tuple[WorldSpec, ...] = (
    WorldSpec("small-default", 200_000, 8_000, 800, 28, seed=101, ads_share=0.8),
    WorldSpec("strong-taste", 250_000, 10_000, 1_000, 28, seed=102, ads_share=0.8, taste=1.4, idiosyncratic=0.7),
    WorldSpec("weak-taste-noisy", 250_000, 10_000, 1_000, 28, seed=103, ads_share=0.75, taste=0.6,
              idiosyncratic=1.5),
    WorldSpec("promo-heavy-cold", 250_000, 10_000, 1_000, 28, seed=104, ads_share=0.6, new_shows=0.3),
    WorldSpec("ads-heavy-skewed", 300_000, 12_000, 1_200, 28, seed=105, ads_share=0.9, popularity_sd=1.6,
              popularity_exponent=0.5, new_shows=0.05),
    WorldSpec("flat-popularity", 200_000, 8_000, 800, 28, seed=106, ads_share=0.8, popularity_sd=1.0,
              popularity_exponent=0.2, taste=1.2),
    WorldSpec("large-default", 2_000_000, 50_000, 4_000, 56, seed=107, ads_share=0.8),
)

#: The world ``reproduce`` and ``make demo`` draw (``WorldParams()``): not in the family the defaults are chosen on
#: (choosing on the world the report is written on would tune to it), but ``--worlds shipped`` measures the
#: report's figures over seeds.
SHIPPED = WorldSpec("shipped", 2_000_000, 50_000, 4_000, 56, seed=0, ads_share=0.8)

#: ``--quick``: small models, few epochs, short windows (the tiny worlds have 21 days).
QUICK = {"model": {"hidden": [32, 16], "tower_hidden": [8], "embedding_dim": 8},
         "train": {"batch_size": 512, "max_epochs": 2, "patience": 2, "valid_days": 4},
         "optim": {"warmup_steps": 5}, "evaluation": {"test_days": 4}}


# ---------------------------------------------------------------------------------------------- cells
def cell_path(out: Path, world: WorldSpec, variant: Variant, seed: int) -> Path:
    """Where one (world, setup, seed) cell's results are written."""
    return out / "cells" / world.label / variant.name / f"seed{seed}.json"


def cell_key(world: WorldSpec, variant: Variant, seed: int, config: Config, quick: bool) -> dict[str, Any]:
    """What a finished cell must match to be reused: the world spec, the setup, the seed, --quick, and the whole
    configuration the setup resolves to (so a cell of a setup trained under other defaults is trained again)."""
    resolved = json.loads(variant.config(config, seed).model_dump_json())
    spec = asdict(world)
    if not world.earlier_days:  # the keys of cells written before the option existed
        del spec["earlier_days"]
    return {"world": spec, "setup": variant.display, "seed": seed, "quick": quick, "config": resolved}


def finished(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The cell at ``path`` if it was computed for ``key``, else None."""
    if not path.exists():
        return None
    cell = json.loads(path.read_text())
    return cell if cell.get("key") == key else None


def ensure_world(out: Path, world: WorldSpec, quick: bool, log: Any) -> Path:
    """The directory of the world's log under ``out``, drawn unless it holds this world's already."""
    data = out / "worlds" / world.name / ("quick" if quick else "full")
    params = world.params(quick)
    stored = data / "world" / "world.json"
    # compared as JSON: the stored parameters' tuples read back as lists
    if not stored.exists() or json.loads(stored.read_text())["params"] != json.loads(json.dumps(params.to_dict())):
        log(f"{world.name}: drawing {params.n_impressions:,} impressions")
        write_synthetic_dataset(data, params)
    return data


def prepare_world(out: Path, world: WorldSpec, config: Config, quick: bool,
                  log: Any) -> tuple[pa.Table, pa.Table, InformedOracle, float]:
    """Generate (or reuse) the world's log; its training and test rows, the informed oracle fitted on
    the training rows, and the seconds this took."""
    started = time.perf_counter()
    data = ensure_world(out, world, quick, log)
    table = load_log(read_log(data / "impressions.parquet"), config)
    if world.earlier_days:
        table = split_newest_days(table, world.earlier_days, purpose="testing", setting="--earlier-days").older
    testing = split_newest_days(table, config.evaluation.test_days, purpose="testing", setting="evaluation.test_days")
    informed = InformedOracle.fit(World.load(data / "world"), testing.older)
    return testing.older, testing.newest, informed, time.perf_counter() - started


def selected_on_validation(valid: dict[str, Any], refit: dict[str, Any] | None) -> dict[str, Any]:
    """The validation readout of the model selected there. A refit model (``train.refit``) trained on those days, so
    each row's AP is the selected model's (``training.json``'s ``refit.selected_valid_ap``) and the other metrics of
    the published model are dropped; the oracle's stay (they read the rows alone)."""
    if refit is None:
        return valid
    selected = refit["selected_valid_ap"]
    rows = [row | {"ap": selected.get(row["target"]), "roc_auc": None, "log_loss": None, "calibration": None}
            for row in valid["rows"]]
    return valid | {"rows": rows}


def run_cell(out: Path, world: WorldSpec, variant: Variant, seed: int, config: Config, rows: tuple,
             key: dict[str, Any]) -> dict[str, Any]:
    """Train (or reuse) one setup with one seed on the world's training rows; evaluate it on the
    test rows (with the informed oracle) and on its own validation rows; write and return the cell."""
    train_rows, test_rows, informed = rows
    runs_dir = out / "runs" / world.label
    started = time.perf_counter()
    (run,) = run_ablation(train_rows, test_rows, runs_dir, config, variants=[variant], seeds=[seed],
                          informed=informed)
    trained = load_model(ablation_run_dir(runs_dir, variant.name, seed))
    valid_rows = split_training_log(train_rows, trained.config).newest
    record = trained.record
    valid = selected_on_validation(trained.evaluate(valid_rows, segments=(ALL,)).to_dict(), record.refit)
    cell = {"key": key, "seconds": time.perf_counter() - started, "train_seconds": record.seconds,
            "best_epoch": record.best_epoch, "best_valid_score": record.best_valid_score,
            "test": run.result.to_dict(), "valid": valid}
    atomic_write_json(cell_path(out, world, variant, seed), cell)
    return cell


def run_family(out: Path, worlds: Sequence[WorldSpec], variants: Sequence[Variant], seeds: Sequence[int],
               config: Config, quick: bool, log: Any = print) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every cell of ``worlds`` × ``variants`` × ``seeds``, computed or read back; prints the time per cell."""
    cells: dict[tuple[str, str, int], dict[str, Any]] = {}
    for world in worlds:
        todo = []
        for variant in variants:
            for seed in seeds:
                key = cell_key(world, variant, seed, config, quick)
                done = finished(cell_path(out, world, variant, seed), key)
                if done is not None:
                    cells[(world.label, variant.name, seed)] = done
                else:
                    todo.append((variant, seed, key))
        if not todo:
            log(f"{world.label}: all {len(variants) * len(seeds)} cells already done")
            continue
        train_rows, test_rows, informed, seconds = prepare_world(out, world, config, quick, log)
        log(f"{world.label}: {train_rows.num_rows:,} training and {test_rows.num_rows:,} test impressions, world "
            f"and informed oracle in {seconds:.0f} s")
        for variant, seed, key in todo:
            cell = run_cell(out, world, variant, seed, config, (train_rows, test_rows, informed), key)
            cells[(world.label, variant.name, seed)] = cell
            log(f"{world.label} | {variant.display} | seed {seed}: {cell['seconds']:.0f} s "
                f"(training {cell['train_seconds']:.0f} s, best epoch {cell['best_epoch'] + 1})")
    return cells


# ---------------------------------------------------------------------------------------------- summary
def _runs(cells: dict, world: str, variants: Sequence[Variant], seeds: Sequence[int], split: str) -> list[AblationRun]:
    """The cells of one world as ablation runs (``split``: "test" or "valid"), for ``paired_change``."""
    return [AblationRun(v, s, EvaluationResult.from_dict(cells[(world, v.name, s)][split]), float("nan"),
                        cells[(world, v.name, s)]["seconds"])
            for v in variants for s in seeds if (world, v.name, s) in cells]


def _spread(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return "—"
    return f"{finite.mean():.4f} ± {finite.std(ddof=1):.4f}" if finite.size > 1 else f"{finite[0]:.4f}"


def _gap(runs: list[AblationRun], variant: str, head: str) -> str:
    change = paired_change(runs, variant, LINEAR_BASELINE, head)
    if change is None:
        return "—"
    verdict = "" if change.seeds < 2 else (" **beyond spread**" if change.separable else " within spread")
    se = "" if change.seeds < 2 else f" ± {change.standard_error:.4f}"
    return f"{change.mean:+.4f}{se}{verdict}"


def split_table(cells: dict, worlds: Sequence[WorldSpec], variants: Sequence[Variant], seeds: Sequence[int],
                split: str) -> str:
    """Markdown: per world × head, each setup's AP mean ± std over seeds, the oracles' AP, each setup's
    oracle ratio and its paired gap to logreg (± standard error; beyond spread = beyond 2 SE)."""
    names = [v.display for v in variants]
    others = [v for v in variants if v.name != LINEAR_BASELINE]
    has_baseline = any(v.name == LINEAR_BASELINE for v in variants)
    header = (["world", "head", "oracle AP"] + (["informed oracle AP"] if split == "test" else [])
              + [f"{n} AP" for n in names] + [f"{n} / oracle" for n in names]
              + ([f"{v.display} − logreg" for v in others] if has_baseline else []))
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for world in worlds:
        runs = _runs(cells, world.label, variants, seeds, split)
        if not runs:
            continue
        for head in HEADS:
            if head not in runs[0].result.targets:
                continue
            row = runs[0].result.row(head)
            aps = {v.name: np.array([r.result.ap(head) for r in runs if r.variant.name == v.name]) for v in variants}
            cells_ = [world.label, head, f"{row.oracle_ap:.4f}"]
            cells_ += [f"{row.informed_oracle_ap:.4f}"] if split == "test" else []
            cells_ += [_spread(aps[v.name]) for v in variants]
            cells_ += [f"{np.nanmean(aps[v.name]) / row.oracle_ap:.3f}" if aps[v.name].size and row.oracle_ap > 0
                       else "—" for v in variants]
            cells_ += [_gap(runs, v.name, head) for v in others] if has_baseline else []
            lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def world_table(worlds: Sequence[WorldSpec], quick: bool) -> str:
    """Markdown: the spec of every world (the sizes actually drawn: tiny ones with --quick)."""
    lines = ["| world | impressions | users | shows | days | seed | ads share | taste × | idiosyncratic × | "
             "popularity sd | popularity exponent | new shows |", "| --- |" + " ---: |" * 11]
    for w in worlds:
        p = w.params(quick)
        lines.append(f"| {w.label} | {p.n_impressions:,} | {p.n_users:,} | {p.n_shows:,} | {p.n_days} | {w.seed} | "
                     f"{w.ads_share:.2f} | {w.taste:.1f} | {w.idiosyncratic:.1f} | {w.popularity_sd:.1f} | "
                     f"{w.popularity_exponent:.1f} | {w.new_shows:.2f} |")
    return "\n".join(lines)


def time_table(cells: dict, worlds: Sequence[WorldSpec], variants: Sequence[Variant]) -> str:
    """Markdown: mean seconds per cell (training and both evaluations) of each world and setup."""
    lines = ["| world | " + " | ".join(v.display for v in variants) + " |", "| --- |" + " ---: |" * len(variants)]
    for w in worlds:
        times = [[c["seconds"] for (wn, vn, _), c in cells.items() if wn == w.label and vn == v.name] for v in variants]
        lines.append(f"| {w.label} | " + " | ".join(f"{np.mean(t):.0f} s" if t else "—" for t in times) + " |")
    return "\n".join(lines)


def report(cells: dict, worlds: Sequence[WorldSpec], variants: Sequence[Variant], seeds: Sequence[int],
           config: Config, quick: bool, command: str) -> str:
    """The whole Markdown document."""
    left_out = {w.earlier_days for w in worlds if w.earlier_days}
    earlier = f" before its newest {', '.join(f'{d:g}' for d in left_out)} (left out: `--earlier-days`)" \
        if left_out else ""
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} " \
              f"({torch.get_num_threads()} threads)"
    return "\n\n".join([
        "# Robustness of the defaults across a family of synthetic worlds",
        f"Generated by `{command}` ({'--quick: tiny worlds, a smoke test, not a measurement; ' if quick else ''}"
        f"seeds {list(seeds)}; {machine}). Do not edit by hand: rerun the script.",
        "Each world is drawn from the generator with its own seed, size, source mix and knobs (below). Its newest "
        f"{config.evaluation.test_days:g} days{earlier} are the test rows; each setup is trained on the older days, selecting "
        f"its epoch on their newest {config.train.valid_days:g} days. **Validation AP** is the selected model on "
        "those validation days (choose defaults on these; under `train.refit` the model selected before its refit, "
        "from `training.json`); **test AP** is the published model's on the test days. Values are mean ± standard "
        "deviation over seeds. Oracle AP: the world's true probabilities on the same rows; informed oracle AP: the "
        "truth with each show's own effects known only through the training days (docs/evaluation.md). "
        "`− logreg`: the mean paired difference to the linear baseline over seeds ± its standard error, "
        "**beyond spread** when it exceeds two standard errors.",
        "## The worlds", world_table(worlds, quick),
        "## Validation AP (model selection)", split_table(cells, worlds, variants, seeds, "valid"),
        "## Test AP", split_table(cells, worlds, variants, seeds, "test"),
        "## Seconds per cell (training and evaluations)", time_table(cells, worlds, variants),
    ]) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/robustness"), help="cells, worlds and runs")
    parser.add_argument("--doc", type=Path, default=Path("docs/robustness.md"), help="the Markdown summary")
    parser.add_argument("--setup", action="append", help="PRESET or PRESET:key=value[,key=value] (repeatable; "
                        f"default {' '.join(DEFAULT_SETUPS)})")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setup and world")
    parser.add_argument("--worlds", help="comma-separated names of WORLDS, or shipped (default: every one of WORLDS)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="tiny worlds and small models: a smoke test")
    parser.add_argument("--earlier-days", type=float, default=0.0,
                        help="leave out each log's newest N days first, so the test days are earlier ones (N = "
                             "train.valid_days: the validation days of the full log, where a choice may be made)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [parse_variant(s) for s in (args.setup or DEFAULT_SETUPS)]
    names = {w.name: w for w in (*WORLDS, SHIPPED)}
    chosen = args.worlds.split(",") if args.worlds else [w.name for w in WORLDS]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        parser.error(f"unknown worlds {unknown}; choose among {list(names)}")
    worlds = [replace(names[n], earlier_days=args.earlier_days) for n in chosen]
    config = merge(Config(), {**(QUICK if args.quick else {}), "train": {
        **(QUICK["train"] if args.quick else {}), "threads": args.threads}})
    for variant in variants:
        variant.setup(config)  # an unknown key fails here, before any world is drawn
    seeds = range(args.seeds)
    cells = run_family(args.out, worlds, variants, seeds, config, args.quick)
    command = "python benchmarks/robustness.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(cells, worlds, variants, seeds, config, args.quick, command.strip())
    atomic_write_text(args.doc, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
