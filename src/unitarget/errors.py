"""User-facing errors.

Everything the user can cause (a bad log, a bad configuration, a missing file) raises a subclass of
:class:`UnitargetError`; the CLI prints its message and exits non-zero without a traceback. Any
other exception is a bug in unitarget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: How many offending row positions an error keeps and shows.
MAX_ROWS_SHOWN: Final = 5


class UnitargetError(Exception):
    """Base of every error caused by the user's input, files or configuration."""


class ConfigError(UnitargetError):
    """The configuration is invalid (unknown key, wrong value, inconsistent settings)."""


class ContractError(UnitargetError):
    """An impression log breaks the data contract (docs/data-contract.md).

    Attributes:
        column: the offending column, or None for table-level problems (an empty dataset).
        rows: 0-based positions of the first offending rows (at most ``MAX_ROWS_SHOWN``); empty for
            column-level problems (a missing column or a wrong type).
        count: how many rows are affected; for a missing column, how many columns are missing; for a
            wrong type, every row of the column.
    """

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        rows: Sequence[int] = (),
        count: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.rows: list[int] = [int(r) for r in rows][:MAX_ROWS_SHOWN]
        self.count = int(count)

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes survive pickling (e.g. across DDP / multiprocessing workers).
        return (_rebuild_contract_error, (self.message, self.column, self.rows, self.count))


def _rebuild_contract_error(message: str, column: str | None, rows: list[int], count: int) -> ContractError:
    return ContractError(message, column=column, rows=rows, count=count)
