"""The ``unitarget`` command: parse, load configuration, call the library, print. Nothing else.

Every user-caused error (bad log, bad configuration, missing file) is a ``UnitargetError``: it is
printed as one message and the command exits with status 2, without a traceback. Each module of
this package registers its commands on the one ``app``.
"""

from __future__ import annotations

from unitarget.cli import modelling, studies, tuning, serving, ope, datasets  # noqa: F401,I001  (registers the commands, in help order)
from unitarget.cli.app import EXIT_INTERRUPTED, EXIT_USER_ERROR, app

app.add_typer(datasets.app, name="datasets")

__all__ = ["EXIT_INTERRUPTED", "EXIT_USER_ERROR", "app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    """The ``unitarget`` console script."""
    app(prog_name="unitarget")
