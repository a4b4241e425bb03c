"""Commands over one model: generate a world, train, fine-tune, predict, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from unitarget.cli.app import (WORLD, ConfigOption, PresetOption, TrackOption, TrackUriOption, app, console,
                               load_command_config, out_console, set_threads, user_errors)
from unitarget.synth.params import WorldParams


@app.command()
@user_errors
def synth(
    out: Annotated[Path, typer.Option(help="directory to write impressions.parquet and world/ into")],
    users: int = WORLD.n_users, shows: int = WORLD.n_shows, impressions: int = WORLD.n_impressions,
    days: int = WORLD.n_days, seed: int = WORLD.seed,
) -> None:
    """Generate the synthetic world: an impression log with the true probability of every label."""
    from unitarget.progress import RichCountBar
    from unitarget.synth import write_synthetic_dataset

    params = WorldParams(n_users=users, n_shows=shows, n_impressions=impressions, n_days=days, seed=seed)
    with RichCountBar(console, "drawing the latent world", "impressions") as bar:
        path = write_synthetic_dataset(out, params, on_rows=bar)
    console.print(f"wrote {path}")


@app.command()
@user_errors
def train(
    data: Annotated[Path, typer.Option(help="impression log: Parquet file or directory")],
    out: Annotated[Path, typer.Option(help="run directory to write the model into")],
    config_file: ConfigOption = None,
    preset: PresetOption = None,
    seed: Annotated[Optional[int], typer.Option(help="overrides train.seed")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run of the same command from its last "
                                              "checkpoint (each epoch's end; inside epochs too with "
                                              "train.checkpoint_every_steps or _minutes)")] = False,
    cache: Annotated[Optional[Path], typer.Option(help="directory of the encoded cache the log is read into "
                                                       "(default: .<out>.cache beside --out); reused while the "
                                                       "log and the encoding settings are unchanged")] = None,
    nproc: Annotated[int, typer.Option(min=1, help="data-parallel training on N local processes: launches "
                                                   "`torchrun --standalone --nproc-per-node N -m unitarget train` "
                                                   "with the other options (docs/scaling.md)")] = 1,
    track: TrackOption = None,
    track_uri: TrackUriOption = None,
) -> None:
    """Train a model on an impression log (validated against the data contract first); under torchrun, one
    model data-parallel over its processes.

    The log is read chunk by chunk into an on-disk cache of encoded rows and trained on from there, so memory is set
    by the [stream] settings, not by the log's size."""
    from unitarget.training import distributed

    if nproc > 1:
        raise typer.Exit(_launch(nproc, data, out, config_file, preset, seed, resume, cache, track, track_uri))
    config = load_command_config(config_file, preset, seed)
    set_threads(config.train.threads)
    with distributed.from_env(config) as context:
        _train_command(data, out, config, preset, resume, cache, context, (track, track_uri))


def _launch(nproc: int, data: Path, out: Path, config_file: Path | None, preset: str | None, seed: int | None,
            resume: bool, cache: Path | None, track: str | None, track_uri: str | None) -> int:
    """``train --nproc N``: the same command on N processes through torchrun's Python API; its exit status."""
    from unitarget.errors import UnitargetError
    from unitarget.training import distributed

    if distributed.launched_by_torchrun():
        raise UnitargetError("--nproc starts torchrun itself; under torchrun leave it out")
    distributed.check_supported(load_command_config(config_file, preset, seed), nproc)  # before N processes start
    args = ["train", "--data", str(data), "--out", str(out)]
    args += ["--config", str(config_file)] if config_file else []
    args += ["--preset", preset] if preset else []
    args += ["--seed", str(seed)] if seed is not None else []
    args += ["--resume"] if resume else []
    args += ["--cache", str(cache)] if cache else []
    args += ["--track", track] if track else []
    args += ["--track-uri", track_uri] if track_uri else []
    return distributed.launch(nproc, args)


def _train_command(data: Path, out: Path, config, preset: str | None, resume: bool, cache: Path | None,
                   context, track: tuple[str | None, str | None]) -> None:
    """Train (on this rank's share under DDP) and report; only rank 0 shows progress, tracks and reports."""
    from unitarget.io import count_log_rows
    from unitarget.pipeline import train as train_model
    from unitarget.progress import RichCacheProgress, RichTrainingHooks
    from unitarget.runs import CONFIG_FILE, TRAINING_FILE, epochs_trained
    from unitarget.tracking import NO_TRACKER, make_tracker, record_metrics
    from unitarget.training.hooks import ChainedHooks, SilentHooks

    # the store beside the run: publishing replaces --out whole
    tracker = make_tracker(*track, out.parent, "unitarget train") if context.is_main else NO_TRACKER
    progress = RichCacheProgress(console, count_log_rows(data))
    with tracker.run(out.name, config.to_json_dict()) as tracked:
        hooks = ChainedHooks(RichTrainingHooks(console, preset or "train"), tracked.hooks) if context.is_main \
            else SilentHooks()
        try:
            trained = train_model(data, out, config, resume=resume, hooks=hooks, distributed=context, cache=cache,
                                  progress=progress)
        finally:
            progress.close()
        tracked.log_metrics(record_metrics(trained.record))
        tracked.log_artifacts([out / TRAINING_FILE, out / CONFIG_FILE])
    record = trained.record
    if context.is_main:
        ranks = f" on {context.world} ranks" if context.parallel else ""
        epochs, validations = epochs_trained(record.history), len(record.history)
        where = "" if validations == epochs else f" (step {record.best_step}; {validations} validations)"
        console.print(f"model written to {out}{ranks}: best epoch {record.best_epoch + 1} of {epochs}{where}, "
                      f"validation score {record.best_valid_score:.4f} (details in {out / TRAINING_FILE})")
        if record.refit is not None:
            console.print(f"  refit on all {record.refit['rows']:,} rows, the validation days included: "
                          f"{record.refit['epochs']:.2f} epochs ({record.refit['steps']} steps, "
                          f"{record.refit['seconds']:.0f} s); the validation score is the selected model's")
            if trained.config.train.refit_average:
                console.print("  published: the mean of the refit model's and the selected model's logits "
                              "(train.refit_average)")


@app.command()
@user_errors
def finetune(
    model: Annotated[Path, typer.Option(help="run directory of the trained model to extend")],
    data: Annotated[Path, typer.Option(help="impression log labelled for the new objective")],
    task: Annotated[str, typer.Option(help="NAME:label=COL,sources=S1[,S2...] — the new task")],
    out: Annotated[Path, typer.Option(help="run directory for the extended model")],
    freeze_encoder: Annotated[bool, typer.Option(help="train the new head only")] = False,
    init_from: Annotated[Optional[str], typer.Option(help="start the new head as a copy of this task's")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="overrides (e.g. [train])")] = None,
) -> None:
    """Add a task head to a trained model and train it on a (small) log of the new objective."""
    from unitarget.config import parse_task_spec, read_mapping
    from unitarget.pipeline import finetune as finetune_model, load_model
    from unitarget.progress import RichTrainingHooks
    from unitarget.runs import TRAINING_FILE

    spec = parse_task_spec(task)
    overrides = read_mapping(config_file) if config_file else None
    base = load_model(model)
    set_threads((overrides or {}).get("train", {}).get("threads", base.config.train.threads))
    tuned = finetune_model(base, data, out, spec, freeze_encoder=freeze_encoder, init_from=init_from,
                           overrides=overrides, hooks=RichTrainingHooks(console, f"finetune {spec.name}"))
    table = Table(title="old heads, validation AP on the new log (before → after)")
    for column in ("task", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for name, ap in tuned.record.old_heads_valid_ap.items():
        change = (ap["after"] - ap["before"]) / ap["before"] if ap["before"] else float("nan")
        table.add_row(name, f"{ap['before']:.4f}", f"{ap['after']:.4f}", f"{change:+.2%}")
    out_console.print(table)
    console.print(f"model with task {spec.name!r} written to {out} (details in {out / TRAINING_FILE})")


@app.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Option(help="run directory written by `unitarget train`")],
    data: Annotated[Path, typer.Option(help="impression log to score (labels not needed)")],
    out: Annotated[Path, typer.Option(help="Parquet file: impression_id and p_<task>, row for row")],
    chunk_rows: Annotated[int, typer.Option(min=1, help="impressions scored per chunk (bounds memory)")] = 1_000_000,
) -> None:
    """Score every impression of a log with every task head, streaming in chunks."""
    from unitarget.pipeline import load_model, write_predictions

    with console.status("scoring") as status:
        rows = write_predictions(load_model(model), data, out, chunk_rows=chunk_rows,
                                 on_chunk=lambda done: status.update(f"scored {done:,} impressions"))
    console.print(f"wrote {rows:,} predictions to {out}")


@app.command()
@user_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="run directory written by `unitarget train`")],
    data: Annotated[Path, typer.Option(help="labelled impression log, e.g. the newest days")],
    out: Annotated[Optional[Path], typer.Option(help="directory for evaluation.json and evaluation.md")] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="impressions scored per chunk (bounds memory)")] = 1_000_000,
    baseline: Annotated[Optional[Path], typer.Option(
        help="run directory of a baseline trained on the same days (e.g. `train --preset logreg`): its row is "
             "added to every table, with whether the model beats it")] = None,
    world: Annotated[Optional[Path], typer.Option(
        help="synthetic logs: the directory `unitarget synth --out` wrote, for the informed oracle (what the "
             "impressions logged before --data's first one allow; docs/evaluation.md)")] = None,
) -> None:
    """AP, ROC-AUC, log loss and calibration per task × source × popularity tier, reading the log in
    chunks: memory is a few chunks plus, at the peak, about 140 bytes an impression with the default
    tasks (200 on a synthetic log; README.md). On a synthetic log: the oracle's AP and AP / oracle,
    and with --world the informed oracle's AP."""
    from unitarget.evaluation.informed import InformedOracle
    from unitarget.io import atomic_write_json, atomic_write_text, count_log_rows
    from unitarget.pipeline import evaluate_log, load_model
    from unitarget.progress import row_progress

    trained = load_model(model)
    reference = load_model(baseline) if baseline is not None else None
    informed = None
    if world is not None:
        with console.status("fitting the informed oracle on the impressions before the evaluated ones"):
            informed = InformedOracle.for_log(world, data)
    with row_progress(console, "evaluating", count_log_rows(data)) as advance:
        result = evaluate_log(trained, data, chunk_rows=chunk_rows, on_chunk=advance, informed=informed,
                              baseline=reference, baseline_name=baseline.name if baseline is not None else "baseline")
    out_console.print(result.to_rich_tables())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "evaluation.json", result.to_dict())
        atomic_write_text(out / "evaluation.md", result.to_markdown())
        console.print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.md'}")
