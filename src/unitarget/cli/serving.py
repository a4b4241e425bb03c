"""Commands that put a model into service: export, serve, score an audience."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unitarget.cli.app import app, console, user_errors


@app.command()
@user_errors
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
@user_errors
def serve(
    model: Annotated[Path, typer.Option(help="export directory (from `unitarget export`) to serve first, where the "
                                             "models directory has no version pointer yet (else the pointed "
                                             "version is served: the last reload survives a restart)")],
    models_dir: Annotated[Optional[Path], typer.Option(help="directory of versions /v1/reload may switch "
                                                            "to (default: the parent of --model)")] = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, help="processes, each with its own model copy; a reload reaches "
                                                     "all of them through the version pointer")] = 1,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads per inference")] = 1,
    max_candidates: Annotated[int, typer.Option(min=1, help="candidates per request (more -> 413)")] = 1_000,
    max_body_mb: Annotated[float, typer.Option(help="request body limit in MiB (more -> 413)")] = 1.0,
    max_in_flight: Annotated[int, typer.Option(min=1, help="scoring requests at once (more -> 503)")] = 64,
    batch_window_ms: Annotated[float, typer.Option(min=0, max=100, help="longest a request waits for others in "
                                                   "flight to share one ONNX Runtime call (0: no batching)")] = 1.0,
    batch_max_rows: Annotated[int, typer.Option(min=1, help="candidate rows per batched call at most")] = 4096,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve an exported model over HTTP (FastAPI + uvicorn, ONNX Runtime)."""
    from unitarget.serving.app import serve as run_service
    from unitarget.serving.pointer import read_pointer
    from unitarget.serving.runtime import load_exported
    from unitarget.serving.settings import ServiceSettings

    settings = ServiceSettings.for_model(model, models_dir, threads=threads, max_candidates=max_candidates,
                                         max_body_bytes=int(max_body_mb * 1024 * 1024), max_in_flight=max_in_flight,
                                         batch_window_ms=batch_window_ms, batch_max_rows=batch_max_rows)
    pointed = read_pointer(settings.models_dir)
    first = settings.models_dir / pointed.version if pointed else model
    if pointed and pointed.version != settings.version:
        console.print(f"the version pointer of {settings.models_dir} names {pointed.version}: serving it, "
                      f"not {model.name} (POST /v1/reload to switch)")
    load_exported(first, threads=threads)  # a damaged export stops here with a clear message
    console.print(f"serving {first} on http://{host}:{port} (OpenAPI: /openapi.json, docs: /docs)")
    run_service(settings, host=host, port=port, workers=workers, access_log=access_log)


@app.command("score-audience")
@user_errors
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
