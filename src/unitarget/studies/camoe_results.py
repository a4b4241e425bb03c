"""What the CAMoE study measures, and the statistics over it: runs per (arm, seed), AP per arm and
(label, format) over seeds, the Pareto front of the main arms, and differences in standard errors.

Everything here is plain data and arithmetic, JSON round-trips included (the journal that lets a
stopped study resume, and ``camoe_facts.json`` that lets the report be written again without
training), so ``reports.camoe`` renders from it without importing the training code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unitarget.config import Config, config_from_mapping
from unitarget.contract import AD_FORMATS
from unitarget.evaluation.formats import ALL_FORMATS, FormatRow
from unitarget.studies.camoe_arms import LABELS, Arm, camoe_arms
from unitarget.studies.cost import Cost
from unitarget.studies.pareto import pareto_front

@dataclass(frozen=True)
class ArmRun:
    """One arm trained with one seed: its per-format rows on the test days."""

    arm: str
    seed: int
    rows: tuple[FormatRow, ...]
    seconds: float
    parameters: int


@dataclass(frozen=True)
class StudyFacts:
    """Everything the report states, measured by ``studies.camoe.measure_camoe``."""

    arms: Sequence[Arm]
    runs: Sequence[ArmRun]
    costs: Sequence[Cost]
    seeds: tuple[int, ...]
    log_rows: int
    sampled_rows: int | None
    split: Mapping[str, int]
    config: Config
    seconds: float
    machine: str


COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (label, fmt) for label in LABELS for fmt in (*AD_FORMATS, ALL_FORMATS)
)


@dataclass(frozen=True)
class Cell:
    """AP of one arm on one (label, format) over seeds."""

    mean: float
    std: float  # sample standard deviation over seeds (NaN with one seed)
    seeds: int
    oracle: float
    task: str

    @property
    def se(self) -> float:
        """Standard error of the seed mean, std / √seeds; NaN with one seed."""
        return self.std / math.sqrt(self.seeds) if self.seeds > 1 else float("nan")


#: arm -> (label, format) -> Cell
Summary = Mapping[str, Mapping[tuple[str, str], Cell]]


def summarise(runs: Sequence[ArmRun]) -> dict[str, dict[tuple[str, str], Cell]]:
    """arm -> (label, format) -> Cell."""
    out: dict[str, dict[tuple[str, str], Cell]] = {}
    for arm in dict.fromkeys(r.arm for r in runs):
        mine = [r for r in runs if r.arm == arm]
        cells = {}
        for label, fmt in COLUMNS:
            rows = [row for r in mine for row in r.rows if (row.label, row.format) == (label, fmt)]
            aps = np.array([row.ap for row in rows], dtype=float)
            if not rows or not np.isfinite(aps).any():
                continue
            finite = aps[np.isfinite(aps)]
            std = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
            first = rows[0]
            cells[(label, fmt)] = Cell(float(finite.mean()), std, int(finite.size), first.oracle_ap,
                                       first.task)
        out[arm] = cells
    return out


def click_points(summary: Summary) -> dict[str, list[float]]:
    """arm -> mean click AP per format, for arms with a click head on every format."""
    return {arm: [cells[("click", f)].mean for f in AD_FORMATS] for arm, cells in summary.items()
            if all(("click", f) in cells for f in AD_FORMATS)}


def main_front(summary: Summary, main: Sequence[str]) -> list[str]:
    """The Pareto front of mean click AP per format among the arms in ``main``."""
    return pareto_front({a: p for a, p in click_points(summary).items() if a in main})


def z_score(a: Cell, b: Cell) -> float:
    """(a - b) in standard errors of the difference of the two seed means; NaN with one seed."""
    se = math.sqrt(a.se ** 2 + b.se ** 2) if math.isfinite(a.se) and math.isfinite(b.se) else float("nan")
    return (a.mean - b.mean) / se if se > 0 else float("nan")


def arm_parameters(runs: Sequence[ArmRun]) -> dict[str, int]:
    """arm -> parameters of its model(s)."""
    return {r.arm: r.parameters for r in runs}


def _row(values: Mapping[str, Any]) -> FormatRow:
    """A FormatRow read back from JSON, where an undefined AP was written as null."""
    undefined = {k: float("nan") for k in ("ap", "oracle_ap") if values[k] is None}
    return FormatRow(**{**values, **undefined})


def append_journal(path: Path, run: ArmRun) -> None:
    """Append one finished (arm, seed) as a JSON line (NaN written as null)."""
    record = asdict(run)
    record["rows"] = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
                      for row in record["rows"]]
    with open(path, "a") as fh:
        fh.write(json.dumps(record, allow_nan=False) + "\n")


def read_journal(path: Path) -> list[ArmRun]:
    """The runs ``append_journal`` wrote, one JSON line each (blank lines skipped), null APs read back as NaN."""
    runs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [ArmRun(**{**r, "rows": tuple(_row(v) for v in r["rows"])}) for r in runs]


def facts_to_json(facts: StudyFacts) -> dict[str, Any]:
    """Everything measured, so the report can be written again without training (``facts_from_json``)."""
    return {
        "arms": [a.name for a in facts.arms],
        "runs": [{**asdict(r), "rows": [asdict(row) for row in r.rows]} for r in facts.runs],
        "costs": [asdict(c) for c in facts.costs],
        "seeds": list(facts.seeds), "log_rows": facts.log_rows, "sampled_rows": facts.sampled_rows,
        "split": dict(facts.split), "config": facts.config.to_json_dict(), "seconds": facts.seconds,
        "machine": facts.machine,
    }


def facts_from_json(data: Mapping[str, Any]) -> StudyFacts:
    """Inverse of ``facts_to_json``: arms found by name in ``camoe_arms()``, the configuration validated again, so the
    report can be rendered again without training."""
    known = {a.name: a for a in camoe_arms()}
    runs = [ArmRun(**{**r, "rows": tuple(_row(v) for v in r["rows"])}) for r in data["runs"]]
    return StudyFacts(
        arms=[known[name] for name in data["arms"]], runs=runs, costs=[Cost(**c) for c in data["costs"]],
        seeds=tuple(data["seeds"]), log_rows=data["log_rows"], sampled_rows=data["sampled_rows"],
        split=data["split"], config=config_from_mapping(data["config"]), seconds=data["seconds"],
        machine=data["machine"],
    )
