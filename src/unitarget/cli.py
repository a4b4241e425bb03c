"""The ``unitarget`` command: parse, load configuration, call the library, print. Nothing else.

Every user-caused error (bad log, bad configuration, missing file) is a ``UnitargetError``: it is
printed as one message and the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from unitarget.errors import UnitargetError
from unitarget.synth.params import WorldParams

app = typer.Typer(
    help="Target podcast ads and promotions with one multi-task model (WSDM 2026, KDD 2025).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out_console = Console()

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

#: Default world of `synth` and `reproduce`: WorldParams' own sizes, so they are written only there.
_WORLD = WorldParams()


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UnitargetError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: a training run can continue with --resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _set_threads(threads: int | None) -> None:
    """``train.threads``: torch's intra-op threads for this process, set here and nowhere in the
    library (a notebook or service embedding unitarget keeps its own setting)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _threads_of(config: Any) -> Any:
    """``config``, after setting the process's threads from its ``train.threads``."""
    _set_threads(config.train.threads)
    return config


def _config(config_file: Path | None, preset: str | None, seed: int | None):
    from unitarget.config import load_config, merge
    from unitarget.presets import apply_preset

    config = apply_preset(load_config(config_file), preset)
    return merge(config, {"train": {"seed": seed}}) if seed is not None else config


ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="TOML or YAML configuration file")]
PresetOption = Annotated[Optional[str], typer.Option(help="Table 1 setup: promo-baseline, promo-stream-only, "
                                                          "ads-stream-only, ads-anc, unified")]


@app.command()
@_user_errors
def synth(
    out: Annotated[Path, typer.Option(help="directory to write impressions.parquet and world/ into")],
    users: int = _WORLD.n_users, shows: int = _WORLD.n_shows, impressions: int = _WORLD.n_impressions,
    days: int = _WORLD.n_days, seed: int = _WORLD.seed,
) -> None:
    """Generate the synthetic world: an impression log with the true probability of every label."""
    from unitarget.synth import write_synthetic_dataset

    params = WorldParams(n_users=users, n_shows=shows, n_impressions=impressions, n_days=days, seed=seed)
    with console.status("generating the synthetic world"):
        path = write_synthetic_dataset(out, params)
    console.print(f"wrote {path}")


@app.command()
@_user_errors
def train(
    data: Annotated[Path, typer.Option(help="impression log: Parquet file or directory")],
    out: Annotated[Path, typer.Option(help="run directory to write the model into")],
    config_file: ConfigOption = None,
    preset: PresetOption = None,
    seed: Annotated[Optional[int], typer.Option(help="overrides train.seed")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run of the same command")] = False,
) -> None:
    """Train a model on an impression log (validated against the data contract first)."""
    from unitarget.pipeline import train as train_model
    from unitarget.progress import RichTrainingHooks
    from unitarget.runs import TRAINING_FILE

    config = _config(config_file, preset, seed)
    _set_threads(config.train.threads)
    trained = train_model(data, out, config, resume=resume, hooks=RichTrainingHooks(console, preset or "train"))
    record = trained.record
    console.print(f"model written to {out}: best epoch {record.best_epoch + 1} of {len(record.history)}, "
                  f"validation score {record.best_valid_score:.4f} (details in {out / TRAINING_FILE})")


@app.command()
@_user_errors
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
    _set_threads((overrides or {}).get("train", {}).get("threads", base.config.train.threads))
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
@_user_errors
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
@_user_errors
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


@app.command()
@_user_errors
def reproduce(
    out: Annotated[Path, typer.Option(help="results directory (REPORT.md, charts, runs)")] = Path("results"),
    config_file: ConfigOption = None,
    users: int = _WORLD.n_users, shows: int = _WORLD.n_shows, impressions: int = _WORLD.n_impressions,
    days: int = _WORLD.n_days, seed: int = _WORLD.seed,
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
        out, params, _threads_of(load_config(config_file)),
        hooks_for=lambda preset: RichTrainingHooks(console, preset),
        log=lambda message: console.print(message, highlight=False),
        full=full, seeds=seeds,
    )
    console.print(f"report written to {report}")


STUDIES = ("paper", "camoe")


@app.command()
@_user_errors
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
) -> None:
    """Train every ablation of a study with several seeds and write its report."""
    from unitarget.config import load_config
    from unitarget.errors import ConfigError
    from unitarget.progress import RichTrainingHooks
    from unitarget.experiments.ablation import run_paper_study
    from unitarget.studies.ablation import paper_variants

    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; choose one of: {', '.join(STUDIES)}")
    if study == "camoe":
        _ablate_camoe(data, out, _threads_of(load_config(config_file)), seeds=seeds, only=only, rows=rows,
                      epochs=epochs, resume=resume)
        return
    variants = paper_variants()
    if only:
        wanted = [name.strip() for name in only.split(",")]
        unknown = set(wanted) - {v.name for v in variants}
        if unknown:
            raise ConfigError(f"unknown variants {sorted(unknown)}; known: {', '.join(v.name for v in variants)}")
        variants = [v for v in variants if v.name in wanted or v.name == "promo-baseline"]
    report = run_paper_study(data, out, _threads_of(load_config(config_file)), seeds=range(seeds), variants=variants,
                             learning_curve=curve, hooks_for=lambda name: RichTrainingHooks(console, name),
                             log=lambda message: console.print(message, highlight=False))
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
@_user_errors
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


@app.command()
@_user_errors
def export(
    model: Annotated[Path, typer.Option(help="run directory written by `unitarget train`")],
    out: Annotated[Path, typer.Option(help="new directory for the export (one per model version)")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing export at --out")] = False,
) -> None:
    """Export a trained model to ONNX with its encoder and manifest; check ONNX Runtime against PyTorch."""
    from unitarget.serving.export import export_model

    with console.status("exporting to ONNX"):
        report = export_model(model, out, overwrite=overwrite)
    console.print(f"parity on {report.parity_rows} sample rows: max abs difference {report.max_abs_diff:.3g}")
    console.print(f"exported {', '.join(report.tasks)} to {report.out} ({report.seconds:.1f} s)")


@app.command()
@_user_errors
def serve(
    model: Annotated[Path, typer.Option(help="export directory (from `unitarget export`) to serve first")],
    models_dir: Annotated[Optional[Path], typer.Option(help="directory of versions /v1/reload may switch "
                                                            "to (default: the parent of --model)")] = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="processes, each with its own model copy")] = 1,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads per inference")] = 1,
    max_candidates: Annotated[int, typer.Option(min=1, help="candidates per request (more -> 413)")] = 1_000,
    max_body_mb: Annotated[float, typer.Option(help="request body limit in MiB (more -> 413)")] = 1.0,
    max_in_flight: Annotated[int, typer.Option(min=1, help="scoring requests at once (more -> 503)")] = 64,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve an exported model over HTTP (FastAPI + uvicorn, ONNX Runtime)."""
    from unitarget.serving.app import serve as run_service
    from unitarget.serving.runtime import load_exported
    from unitarget.serving.settings import ServiceSettings

    settings = ServiceSettings.for_model(model, models_dir, threads=threads, max_candidates=max_candidates,
                                         max_body_bytes=int(max_body_mb * 1024 * 1024), max_in_flight=max_in_flight)
    load_exported(model, threads=threads)  # a damaged export stops here with a clear message
    console.print(f"serving {model} on http://{host}:{port} (OpenAPI: /openapi.json, docs: /docs)")
    run_service(settings, host=host, port=port, workers=workers, access_log=access_log)


@app.command("score-audience")
@_user_errors
def score_audience(
    model: Annotated[Path, typer.Option(help="export directory (from `unitarget export`)")],
    users: Annotated[Path, typer.Option(help="Parquet file or directory with user_id and optional user columns")],
    campaign: Annotated[str, typer.Option(help="campaign as inline JSON or a .json/.toml file: show_id, "
                                               "creative fields, format, surface ...")],
    out: Annotated[Path, typer.Option(help="Parquet file: user_id and p_<task>, one row per user")],
    chunk_rows: Annotated[int, typer.Option(min=1, help="users scored per chunk (bounds memory)")] = 65_536,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads")] = 2,
) -> None:
    """Score every user of a table for one campaign, streaming in chunks."""
    from unitarget.serving.audience import parse_campaign, score_audience as run_scoring

    spec = parse_campaign(campaign)
    with console.status("scoring the audience") as status:
        report = run_scoring(model, users, spec, out, chunk_rows=chunk_rows, threads=threads,
                             on_chunk=lambda rows: status.update(f"scored {rows:,} users"))
    console.print(f"wrote {report.rows:,} users to {out} ({report.seconds:.1f} s)")


def main() -> None:  # pragma: no cover - console entry point
    """The ``unitarget`` console script."""
    app(prog_name="unitarget")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
