"""The ``ope`` command: off-policy evaluation of a trained model as a policy on a logged-bandit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from unitarget.cli.app import app, console, out_console, user_errors


@app.command()
@user_errors
def ope(
    model: Annotated[Path, typer.Option(help="run directory written by `unitarget train`")],
    data: Annotated[Path, typer.Option(help="impression log with a propensity column (uniform-random logging)")],
    source: Annotated[str, typer.Option(help="source whose impressions were logged uniformly at random")] = "ads",
    out: Annotated[Optional[Path], typer.Option(help="directory for OPE.md and ope.json")] = None,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap")] = 0,
    resamples: Annotated[int, typer.Option(min=1, help="bootstrap resamples per interval")] = 1_000,
    temperature: Annotated[Optional[float], typer.Option(help="also evaluate a softmax policy at this "
                                                              "temperature")] = None,
) -> None:
    """Estimate the click rate the model would get choosing items by its scores (IPS, SNIPS, DR)."""
    from unitarget.experiments.ope import run_ope

    with console.status("scoring every candidate of every impression"):
        result = run_ope(model, data, out, source=source, seed=seed, n_resamples=resamples, temperature=temperature)
    table = Table(title=f"off-policy click rate on {source!r} ({result.impressions:,} impressions, "
                        f"{result.level:.0%} bootstrap intervals)")
    for column in ("policy", "estimator", "click rate", "interval", "ESS"):
        table.add_column(column, justify="left" if column in ("policy", "estimator") else "right")
    for value in result.policies:
        for name, e in (("IPS", value.ips), ("SNIPS", value.snips), ("DR", value.dr)):
            table.add_row(value.policy, name, f"{e.estimate:.4%}", f"[{e.low:.4%}, {e.high:.4%}]", f"{e.ess:,.0f}")
    for name, e in result.logged.items():
        table.add_row(f"logged ({name})", "on-policy mean", f"{e.estimate:.4%}", f"[{e.low:.4%}, {e.high:.4%}]",
                      f"{e.n:,}")
    out_console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if out is not None:
        console.print(f"wrote {out / 'ope.json'} and {out / 'OPE.md'}")
