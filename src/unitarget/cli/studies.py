"""Commands that run the papers' studies: reproduce, ablate, simulate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from unitarget.cli.app import WORLD, ConfigOption, TrackOption, TrackUriOption, app, console, threads_of, user_errors
from unitarget.synth.params import WorldParams


@app.command()
@user_errors
def reproduce(
    out: Annotated[Path, typer.Option(help="results directory (REPORT.md, charts, runs)")] = Path("results"),
    config_file: ConfigOption = None,
    users: int = WORLD.n_users, shows: int = WORLD.n_shows, impressions: int = WORLD.n_impressions,
    days: int = WORLD.n_days, seed: int = WORLD.seed,
    full: Annotated[bool, typer.Option(help="also run every ablation with --seeds seeds and the new-objective "
                                             "learning curve (about an hour at default size)")] = False,
    seeds: Annotated[int, typer.Option(help="seeds per ablation row with --full")] = 3,
) -> None:
    """Generate the default world, train the five Table 1 setups, evaluate, write REPORT.md."""
    from unitarget.config import load_config
    from unitarget.progress import RichTrainingHooks
    from unitarget.reproduce import reproduce as run_reproduction

    params = WorldParams(n_users=users, n_shows=shows, n_impressions=impressions, n_days=days, seed=seed)
    report = run_reproduction(
        out, params, threads_of(load_config(config_file)),
        hooks_for=lambda preset: RichTrainingHooks(console, preset),
        log=lambda message: console.print(message, highlight=False),
        full=full, seeds=seeds,
    )
    console.print(f"report written to {report}")


STUDIES = ("paper", "camoe")


@app.command()
@user_errors
def ablate(
    data: Annotated[Path, typer.Option(help="impression log; the newest evaluation.test_days are the test split")],
    out: Annotated[Path, typer.Option(help="directory for ABLATION.md, CSV, charts and runs")],
    study: Annotated[str, typer.Option(help=f"which study: {', '.join(STUDIES)}")] = "paper",
    seeds: Annotated[int, typer.Option(help="seeds per row (spreads are over seeds)")] = 3,
    only: Annotated[Optional[str], typer.Option(help="comma-separated variant names to run (default: all)")] = None,
    curve: Annotated[bool, typer.Option(help="paper: also run the new-objective learning curve")] = True,
    config_file: ConfigOption = None,
    rows: Annotated[Optional[int], typer.Option(help="camoe: sample this many training-day ad impressions (smaller study)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="camoe: overrides train.max_epochs")] = None,
    resume: Annotated[bool, typer.Option(help="camoe: keep the runs already in OUT/camoe_runs.jsonl (the paper "
                                              "study always reuses finished runs in OUT/runs)")] = False,
    track: TrackOption = None,
    track_uri: TrackUriOption = None,
) -> None:
    """Train every ablation of a study with several seeds and write its report (tracked: one parent run with the
    reports, and for the paper study a nested run per variant and seed)."""
    from unitarget.config import load_config
    from unitarget.errors import ConfigError
    from unitarget.tracking import make_tracker, report_files

    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; choose one of: {', '.join(STUDIES)}")
    config = threads_of(load_config(config_file))
    tracker = make_tracker(track, track_uri, out, "unitarget ablate")
    with tracker.run(f"ablate {study} {out.name}", config.to_json_dict()) as parent:
        if study == "camoe":
            _ablate_camoe(data, out, config, seeds=seeds, only=only, rows=rows, epochs=epochs, resume=resume)
        else:
            _ablate_paper(data, out, config, seeds=seeds, only=only, curve=curve, tracking=parent)
        parent.log_artifacts(report_files(out))


def _ablate_paper(data: Path, out: Path, config: Any, *, seeds: int, only: str | None, curve: bool,
                  tracking: Any) -> None:
    """``ablate --study paper``: every variant of the paper's ablations (README)."""
    from unitarget.errors import ConfigError
    from unitarget.experiments.ablation import run_paper_study
    from unitarget.progress import RichTrainingHooks
    from unitarget.studies.ablation import paper_variants

    variants = paper_variants()
    if only:
        wanted = [name.strip() for name in only.split(",")]
        unknown = set(wanted) - {v.name for v in variants}
        if unknown:
            raise ConfigError(f"unknown variants {sorted(unknown)}; known: {', '.join(v.name for v in variants)}")
        variants = [v for v in variants if v.name in wanted or v.name == "promo-baseline"]
    report = run_paper_study(data, out, config, seeds=range(seeds), variants=variants, learning_curve=curve,
                             hooks_for=lambda name: RichTrainingHooks(console, name),
                             log=lambda message: console.print(message, highlight=False), tracking=tracking)
    console.print(f"report written to {report}")


def _ablate_camoe(data: Path, out: Path, config: Any, *, seeds: int, only: str | None, rows: int | None,
                  epochs: int | None, resume: bool) -> None:
    """``ablate --study camoe``: per-format CTR, the encoders and CAMoE's ablations (docs/camoe.md)."""
    from unitarget.config import merge
    from unitarget.errors import ConfigError
    from unitarget.experiments.camoe import run_camoe_study
    from unitarget.studies.camoe_arms import camoe_arms

    arms = camoe_arms()
    if only:
        wanted = [name.strip() for name in only.split(",")]
        unknown = set(wanted) - {a.name for a in arms}
        if unknown:
            raise ConfigError(f"unknown arms {sorted(unknown)}; known: {', '.join(a.name for a in arms)}")
        arms = [a for a in arms if a.name in wanted]
    if epochs is not None:
        config = merge(config, {"train": {"max_epochs": epochs}})
    report = run_camoe_study(data, out, config, seeds=range(seeds), arms=arms, rows=rows, resume=resume,
                             log=lambda message: console.print(message, highlight=False))
    console.print(f"report written to {report}")


@app.command()
@user_errors
def simulate(
    world: Annotated[Path, typer.Option(help="directory written by `unitarget synth` (holds world/)")],
    arm: Annotated[list[str], typer.Option(help="NAME=RUN (a trained run directory), oracle or random; "
                                                "repeat for each arm; the first is the control")],
    out: Annotated[Path, typer.Option(help="directory for AB.md, ab_metrics.csv, ab_counts.csv, ab_tiers.png")],
    markets: Annotated[Optional[int], typer.Option(help="overrides simulate.markets")] = None,
    seed: Annotated[Optional[int], typer.Option(help="overrides simulate.seed")] = None,
    config_file: ConfigOption = None,
) -> None:
    """Budget-split A/B test of targeting arms against the synthetic world's truth."""
    from unitarget.config import load_config, merge
    from unitarget.experiments.simulation import run_simulation
    from unitarget.simulation import parse_arm

    config = load_config(config_file)
    overrides = {k: v for k, v in {"markets": markets, "seed": seed}.items() if v is not None}
    config = merge(config, {"simulate": overrides}) if overrides else config
    result = run_simulation(world, [parse_arm(a) for a in arm], out, config.simulate,
                            log=lambda message: console.print(message, highlight=False))
    console.print(f"report written to {out / 'AB.md'} ({result.summary['seconds']['total']:.0f} s)")
