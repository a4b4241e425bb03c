"""Checkpoints written atomically and read without executing code.

``torch.load(weights_only=True)`` refuses pickled objects, so a tampered file cannot run code on
load; a truncated or foreign file becomes one clear ``UnitargetError``. Writes go to a temporary
file that replaces the target only once complete, so a crash mid-save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unitarget.errors import UnitargetError
from unitarget.io import atomic_output


def save(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` with ``torch.save`` through a temporary file, so a crash mid-save keeps the previous file."""
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no pickled code runs) onto the CPU; a missing, damaged or
    non-mapping file raises one ``UnitargetError``."""
    if not path.is_file():
        raise UnitargetError(f"{path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError... for bad files
        raise UnitargetError(
            f"{path} is damaged or not a unitarget weights file (it may be truncated, or hold "
            f"objects that cannot be loaded safely): {type(err).__name__}: {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(payload, dict):
        raise UnitargetError(f"{path} is not a unitarget weights file (expected a mapping)")
    return payload
