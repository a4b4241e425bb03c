"""Commands over one model: generate a world, train, fine-tune, predict, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from unitarget.cli.app import (WORLD, ConfigOption, PresetOption, app, console, load_command_config, out_console,
                               set_threads, user_errors)
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
) -> None:
    """Train a model on an impression log (validated against the data contract first)."""
    from unitarget.pipeline import train as train_model
    from unitarget.progress import RichTrainingHooks
    from unitarget.runs import TRAINING_FILE

    config = load_command_config(config_file, preset, seed)
    set_threads(config.train.threads)
    trained = train_model(data, out, config, resume=resume, hooks=RichTrainingHooks(console, preset or "train"))
    record = trained.record
    console.print(f"model written to {out}: best epoch {record.best_epoch + 1} of {len(record.history)}, "
                  f"validation score {record.best_valid_score:.4f} (details in {out / TRAINING_FILE})")


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
) -> None:
    """AP, ROC-AUC, log loss and calibration per task × source × popularity tier."""
    from unitarget.io import atomic_write_json, atomic_write_text
    from unitarget.pipeline import load_log, load_model

    trained = load_model(model)
    result = trained.evaluate(load_log(data, trained.config))
    out_console.print(result.to_rich_tables())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "evaluation.json", result.to_dict())
        atomic_write_text(out / "evaluation.md", result.to_markdown())
        console.print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.md'}")
