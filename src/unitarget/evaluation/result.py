"""The evaluation result: one :class:`MetricRow` per (target, segment), with JSON, Markdown and
terminal renderings. Undefined metrics are NaN in memory and ``None`` in JSON (never 0).

On a synthetic log the rows carry the oracle AP (the world's true probabilities) and, when the
evaluation was given an informed oracle (``evaluation.informed``), the informed-oracle AP: what the
impressions logged before the evaluated rows allow. The tables then add both and the oracle ratio
AP / oracle AP per segment; on a real log, which has neither, those columns are left out. A result
may carry a baseline's evaluation on the same rows (``baseline``, e.g. the linear ``logreg`` model):
each target's table then ends with the baseline's row and says whether the model beats it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from unitarget.evaluation.segments import TIER_SEGMENTS, segment_label

FORMAT = "unitarget.evaluation/1"
METRICS: tuple[str, ...] = ("ap", "oracle_ap", "roc_auc", "log_loss", "calibration", "informed_oracle_ap")
#: Columns shown only where some row of the target has a value (synthetic logs).
_ORACLE_COLUMNS = ("informed_oracle_ap", "oracle_ap", "oracle_ratio")
#: Column order of the rendered tables: AP first (the paper's metric), then the oracles, then diagnostics.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ap", "AP"),
    ("informed_oracle_ap", "informed oracle AP"),
    ("oracle_ap", "oracle AP"),
    ("oracle_ratio", "AP / oracle"),
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
    #: AP of the informed oracle on the same rows (``evaluation.informed``); NaN if not given
    informed_oracle_ap: float = float("nan")

    @property
    def oracle_ratio(self) -> float:
        """AP / oracle AP: the share of the ceiling the model reaches on this segment (NaN without an oracle)."""
        return self.ap / self.oracle_ap if self.oracle_ap > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-safe dict: every field, undefined (NaN) metrics as None."""
        row = asdict(self)
        for name in METRICS:
            row[name] = None if math.isnan(row[name]) else float(row[name])
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricRow:
        """Inverse of ``to_dict``: exactly the row's keys (missing or unknown ones raise ``ValueError``; results
        written before the informed oracle existed lack ``informed_oracle_ap``, read as NaN), None metrics back to
        NaN."""
        names = {f.name for f in fields(cls)}
        data = {"informed_oracle_ap": None, **data}
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
    return f"{value:.3f}" if name in ("calibration", "oracle_ratio") else f"{value:.4f}"


@dataclass(frozen=True)
class EvaluationResult:
    """All rows of one evaluation, target-major, segments in ``segments.SEGMENTS`` order."""

    rows: tuple[MetricRow, ...]
    #: a baseline's evaluation on the same rows (``pipeline.evaluate_log(baseline=...)``), and its name
    baseline: EvaluationResult | None = None
    baseline_name: str = "baseline"
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
        """JSON-safe dict (NaN -> None); the baseline's evaluation, if any, nested under ``baseline``."""
        out: dict[str, Any] = {"format": FORMAT, "rows": [row.to_dict() for row in self.rows]}
        if self.baseline is not None:
            out["baseline"] = {"name": self.baseline_name, **self.baseline.to_dict()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """Inverse of ``to_dict``; refuses JSON whose ``format`` is not ``unitarget.evaluation/1``."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not an evaluation result: format {data.get('format')!r}, expected {FORMAT!r}")
        rows = tuple(MetricRow.from_dict(row) for row in data["rows"])
        if "baseline" not in data:
            return cls(rows)
        baseline = dict(data["baseline"])
        return cls(rows, cls.from_dict(baseline), baseline.pop("name"))

    def with_baseline(self, baseline: EvaluationResult, name: str) -> EvaluationResult:
        """This result with ``baseline`` (another model's evaluation on the same rows) beside it."""
        return EvaluationResult(self.rows, baseline, name)

    def beats_baseline(self, target: str, segment: str = "all") -> bool | None:
        """Whether the model's AP on ``target`` exceeds the baseline's; None without a baseline, a
        baseline row for the target, or a defined AP on both sides."""
        if self.baseline is None or target not in self.baseline.targets:
            return None
        mine, theirs = self.ap(target, segment), self.baseline.ap(target, segment)
        return None if math.isnan(mine) or math.isnan(theirs) else mine > theirs

    def to_markdown(self) -> str:
        """One Markdown table per target: segment, AP, the oracles' APs and AP / oracle (synthetic logs),
        ROC-AUC, log loss, calibration, n, n_pos; then the baseline's row and verdict, if any."""
        blocks = []
        for target in self.targets:
            columns, rows, verdict = self._table(target)
            first = next(r for r in self.rows if r.target == target)
            where = f"{first.source} impressions" if first.source else "all impressions"
            lines = [
                f"### {target}",
                "",
                f"Task `{first.task}` scored on label `{first.label}`, {where}.",
                "",
                "| segment | " + " | ".join(title for _, title in columns) + " |",
                "| --- | " + " | ".join("---:" for _ in columns) + " |",
            ]
            lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells, _ in rows]
            if verdict:
                lines += ["", verdict]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + "\n"

    def to_rich_tables(self) -> Any:
        """One compact ``rich`` table per target (as ``to_markdown``), as a renderable group."""
        from rich.console import Group
        from rich.table import Table

        tables = []
        for target in self.targets:
            columns, rows, verdict = self._table(target)
            first = next(r for r in self.rows if r.target == target)
            where = f"{first.source} impressions" if first.source else "all impressions"
            table = Table(title=f"{target}: task {first.task} on {where}", title_justify="left",
                          caption=verdict.replace("**", "") if verdict else None, caption_justify="left")
            table.add_column("segment", no_wrap=True)
            for _, name in columns:
                table.add_column(name, justify="right")
            for label, cells, style in rows:
                table.add_row(label, *cells, style=style)
            tables.append(table)
        return Group(*tables)

    def _table(self, target: str) -> tuple[list[tuple[str, str]], list[tuple[str, list[str], str | None]], str]:
        """The columns of ``target``'s table (oracle columns only where some row has a value), its rows as
        (segment label, cells, style), the baseline's row last, and the sentence comparing the two."""
        rows = [r for r in self.rows if r.target == target]
        columns = [(name, title) for name, title in _COLUMNS if name not in _ORACLE_COLUMNS
                   or any(not math.isnan(getattr(r, name)) for r in rows)]
        out = [(segment_label(r.segment), [_format(name, getattr(r, name)) for name, _ in columns],
                "bold" if r.segment in ("all", "less_streamed") else None) for r in rows]
        if self.baseline is None or target not in self.baseline.targets:
            return columns, out, ""
        theirs = self.baseline.row(target)
        out.append((f"{self.baseline_name} (all)", [_format(name, getattr(theirs, name)) for name, _ in columns],
                    "italic"))
        return columns, out, self._verdict(target)

    def _verdict(self, target: str) -> str:
        """One sentence: does the model beat the baseline on ``target`` (all rows)?"""
        beats, name = self.beats_baseline(target), self.baseline_name
        if beats is None:
            return f"No comparison with {name} on {target}: AP is undefined on one side."
        mine, theirs = self.ap(target), self.baseline.ap(target)  # type: ignore[union-attr]
        figures = f"AP {mine:.4f} vs {theirs:.4f}" + (f" ({(mine - theirs) / theirs:+.1%})" if theirs else "")
        return (f"The model beats {name} on {target}: {figures}." if beats
                else f"**The model does not beat {name} on {target}**: {figures}.")
