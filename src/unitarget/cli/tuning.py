"""``unitarget tune``: a resumable hyper-parameter search over the training configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unitarget.cli.app import (EXIT_INTERRUPTED, ConfigOption, PresetOption, TrackOption, TrackUriOption, app, console,
                               load_command_config, threads_of, user_errors)


@app.command()
@user_errors
def tune(
    data: Annotated[Path, typer.Option(help="impression log to train on; its newest train.valid_days select")],
    out: Annotated[Path, typer.Option(help="study directory: study.db, best.toml, trials.csv, trials.png, the best "
                                           "trial's run; rerun with the same directory to continue the study")],
    trials: Annotated[int, typer.Option(min=1, help="finished trials the study should have (complete or pruned)")],
    timeout: Annotated[Optional[float], typer.Option(min=0, help="start no trial after this many seconds")] = None,
    config_file: ConfigOption = None,
    preset: PresetOption = None,
    sampler_seed: Annotated[int, typer.Option(help="seeds the TPE sampler (each trial trains with train.seed)")] = 0,
    track: TrackOption = None,
    track_uri: TrackUriOption = None,
) -> None:
    """Search the learning rate, weight decay, dropout, widths and batch size with Optuna (TPE, median pruning on
    each validation) and write the best configuration as best.toml (docs/tuning.md)."""
    from unitarget.io import count_log_rows
    from unitarget.progress import RichCacheProgress, RichTrainingHooks
    from unitarget.tracking import make_tracker
    from unitarget.tuning import tune as run_study
    from unitarget.tuning.outputs import BEST_FILE
    from unitarget.tuning.study import quiet_optuna

    config = threads_of(load_command_config(config_file, preset, None))
    tracker = make_tracker(track, track_uri, out, "unitarget tune")
    quiet_optuna()
    progress = RichCacheProgress(console, count_log_rows(data))
    try:
        result = run_study(data, out, trials=trials, timeout=timeout, base_config=config, seed=sampler_seed,
                           hooks_for=lambda n: RichTrainingHooks(console, f"trial {n}"),
                           log=lambda message: console.print(message, highlight=False), tracker=tracker,
                           progress=progress)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: rerun the same command to continue the study in {out}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        progress.close()
    if result.best is None:
        console.print(f"no trial completed yet: see {out / 'trials.csv'}")
        return
    console.print(f"best trial {result.best.number}: validation score {result.best.value:.4f}; its configuration "
                  f"is {out / BEST_FILE} (unitarget train --config {out / BEST_FILE}), its model {result.best_run}")
