"""The evaluation result: one :class:`MetricRow` per (target, segment), with JSON, Markdown and
terminal renderings. Undefined metrics are NaN in memory and ``None`` in JSON (never 0)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from unitarget.evaluation.segments import TIER_SEGMENTS, segment_label

FORMAT = "unitarget.evaluation/1"
METRICS: tuple[str, ...] = ("ap", "oracle_ap", "roc_auc", "log_loss", "calibration")
#: Column order of the rendered tables: AP first (the paper's metric), then diagnostics.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ap", "AP"),
    ("oracle_ap", "oracle AP"),
    ("roc_auc", "ROC-AUC"),
    ("log_loss", "log loss"),
    ("calibration", "calibration"),
    ("n", "n"),
    ("n_pos", "n_pos"),
)


@dataclass(frozen=True)
class MetricRow:
    """Metrics of one target on one segment; NaN where a metric is undefined (e.g. no positives)."""

    target: str  # EvalTarget.name
    task: str  # task whose prediction was scored
    label: str  # label column scored against
    source: str | None  # impressions of this source only; None = all
    segment: str  # one of segments.SEGMENTS
    n: int  # observed rows
    n_pos: int  # observed positives
    ap: float  # average precision
    oracle_ap: float  # AP of the true probabilities on the same rows (NaN if not given)
    roc_auc: float
    log_loss: float
    calibration: float  # mean(p) / positive rate

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-safe dict: every field, undefined (NaN) metrics as None."""
        row = asdict(self)
        for name in METRICS:
            row[name] = None if math.isnan(row[name]) else float(row[name])
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricRow:
        """Inverse of ``to_dict``: exactly the row's keys (missing or unknown ones raise ``ValueError``), None metrics
        back to NaN."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
            raise ValueError(f"metric row keys differ: missing {missing}, unknown {unknown}")
        values = dict(data)
        for name in METRICS:
            values[name] = float("nan") if values[name] is None else float(values[name])
        values["n"], values["n_pos"] = int(values["n"]), int(values["n_pos"])
        return cls(**values)


def _format(name: str, value: float | int) -> str:
    if name in ("n", "n_pos"):
        return f"{int(value):,}"
    if math.isnan(value):
        return "—"
    return f"{value:.3f}" if name == "calibration" else f"{value:.4f}"


@dataclass(frozen=True)
class EvaluationResult:
    """All rows of one evaluation, target-major, segments in ``segments.SEGMENTS`` order."""

    rows: tuple[MetricRow, ...]
    _index: dict[tuple[str, str], MetricRow] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(self.rows))
        index: dict[tuple[str, str], MetricRow] = {}
        for row in self.rows:
            key = (row.target, row.segment)
            if key in index:
                raise ValueError(f"duplicate row for target {row.target!r}, segment {row.segment!r}")
            index[key] = row
        object.__setattr__(self, "_index", index)

    @property
    def targets(self) -> tuple[str, ...]:
        """Target names in the order they were evaluated."""
        return tuple(dict.fromkeys(row.target for row in self.rows))

    def row(self, target: str, segment: str = "all") -> MetricRow:
        """The row of ``target`` on ``segment``; a ``KeyError`` naming the evaluated targets otherwise."""
        try:
            return self._index[(target, segment)]
        except KeyError:
            msg = f"no row for target {target!r}, segment {segment!r}; targets: {self.targets}"
            raise KeyError(msg) from None

    def ap(self, target: str, segment: str = "all") -> float:
        """Average precision of ``target`` on ``segment`` (NaN when the segment has no positives)."""
        return self.row(target, segment).ap

    def tier_values(self, target: str, metric: str = "ap") -> np.ndarray:
        """``metric`` of ``target`` on tiers 0..N_TIERS-1, shape (N_TIERS,), NaN where undefined."""
        return np.array([float(getattr(self.row(target, s), metric)) for s in TIER_SEGMENTS])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None)."""
        return {"format": FORMAT, "rows": [row.to_dict() for row in self.rows]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """Inverse of ``to_dict``; refuses JSON whose ``format`` is not ``unitarget.evaluation/1``."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not an evaluation result: format {data.get('format')!r}, expected {FORMAT!r}")
        return cls(tuple(MetricRow.from_dict(row) for row in data["rows"]))

    def to_markdown(self) -> str:
        """One Markdown table per target: segment, AP, oracle AP, ROC-AUC, log loss, calibration, n, n_pos."""
        blocks = []
        for target in self.targets:
            rows = [row for row in self.rows if row.target == target]
            first = rows[0]
            where = f"{first.source} impressions" if first.source else "all impressions"
            lines = [
                f"### {target}",
                "",
                f"Task `{first.task}` scored on label `{first.label}`, {where}.",
                "",
                "| segment | " + " | ".join(title for _, title in _COLUMNS) + " |",
                "| --- | " + " | ".join("---:" for _ in _COLUMNS) + " |",
            ]
            for row in rows:
                cells = [_format(name, getattr(row, name)) for name, _ in _COLUMNS]
                lines.append(f"| {segment_label(row.segment)} | " + " | ".join(cells) + " |")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    def to_rich_tables(self) -> Any:
        """One compact ``rich`` table per target (fits an 80-column terminal), as a renderable group."""
        from rich.console import Group
        from rich.table import Table

        tables = []
        for target in self.targets:
            rows = [r for r in self.rows if r.target == target]
            first = rows[0]
            where = f"{first.source} impressions" if first.source else "all impressions"
            table = Table(title=f"{target}: task {first.task} on {where}", title_justify="left")
            table.add_column("segment", no_wrap=True)
            for _, name in _COLUMNS:
                table.add_column(name, justify="right")
            for row in rows:
                cells = [_format(name, getattr(row, name)) for name, _ in _COLUMNS]
                style = "bold" if row.segment in ("all", "less_streamed") else None
                table.add_row(segment_label(row.segment), *cells, style=style)
            tables.append(table)
        return Group(*tables)
