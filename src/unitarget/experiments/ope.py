"""Off-policy evaluation run and written: ``unitarget ope``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unitarget.reports.ope import write_ope
from unitarget.studies.ope import OPEResult, off_policy_report


def run_ope(model_run: Path, data: Path, out: Path | None, **options: Any) -> OPEResult:
    """Estimate the model policy's click rate on ``data`` (``studies.ope.off_policy_report`` with
    ``options``) and, when ``out`` is given, write ``ope.json`` and ``OPE.md`` there."""
    result = off_policy_report(model_run, data, **options)
    if out is not None:
        write_ope(result, out)
    return result
