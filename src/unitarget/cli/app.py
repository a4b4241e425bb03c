"""The ``unitarget`` Typer app and what every command shares: the consoles, error handling, threads,
configuration loading and common options.

Every user-caused error (bad log, bad configuration, missing file) is a ``UnitargetError``: it is
printed as one message and the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

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

class _ConsoleNotes(logging.Handler):
    """The library's warnings (``unitarget`` logger: a short-log split, for one) as console notes."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print one note on stderr, beside the progress output."""
        console.print(f"[yellow]note:[/] {record.getMessage()}", highlight=False)


logging.getLogger("unitarget").addHandler(_ConsoleNotes(logging.WARNING))

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

#: Default world of `synth` and `reproduce`: WorldParams' own sizes, so they are written only there.
WORLD = WorldParams()


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command that prints a ``UnitargetError`` as one line and exits 2, and an interrupt as 130."""
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


def set_threads(threads: int | None) -> None:
    """``train.threads``: torch's intra-op threads for this process, set here and nowhere in the
    library (a notebook or service embedding unitarget keeps its own setting)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def threads_of(config: Any) -> Any:
    """``config``, after setting the process's threads from its ``train.threads``."""
    set_threads(config.train.threads)
    return config


def load_command_config(config_file: Path | None, preset: str | None, seed: int | None):
    """The configuration file (or defaults), with a Table 1 preset and a seed override applied."""
    from unitarget.config import load_config, merge
    from unitarget.presets import apply_preset

    config = apply_preset(load_config(config_file), preset)
    return merge(config, {"train": {"seed": seed}}) if seed is not None else config


ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="TOML or YAML configuration file")]
PresetOption = Annotated[Optional[str], typer.Option(help="Table 1 setup: promo-baseline, promo-stream-only, "
                                                          "ads-stream-only, ads-anc, unified; or logreg, the "
                                                          "linear baseline (unified tasks, logistic regression)")]
TrackOption = Annotated[Optional[str], typer.Option(help="log the configuration, every validation's metrics, the final "
                                                        "metrics and the reports to an experiment tracker: mlflow "
                                                        "(the 'track' extra; docs/tuning.md)")]
TrackUriOption = Annotated[Optional[str], typer.Option(help="the tracker's store, e.g. sqlite:///PATH.db or "
                                                            "http://HOST:5000 (default: sqlite:///DIR/mlflow.db, DIR "
                                                            "being --out, or its parent for train)")]
