"""The learning-curve section: AP of a new objective against the size of its log."""

from __future__ import annotations

import math
from pathlib import Path


from unitarget.reports.charts import figure, save_png
from unitarget.reports.format import format_relative, relative_change
from unitarget.studies.new_objective import METHODS, NewObjectiveResult


def new_objective_section(result: NewObjectiveResult, out_dir: Path) -> str:
    """The report section of the new-objective study: writes ``learning_curve.png`` into ``out_dir`` and returns the
    Markdown (AP per method and log fraction, where fine-tuning stops paying, the old heads' AP)."""
    _chart(result, out_dir / "learning_curve.png")
    fractions = sorted({p.fraction for p in result.points})
    ap = {(p.method, p.fraction): p.ap for p in result.points}
    rows = {p.fraction: p.rows for p in result.points if p.rows}
    header = "| method | " + " | ".join(f"{f:.0%} ({rows.get(f, 0):,} rows)" for f in fractions) + " |"
    lines = [header, "| --- |" + " ---: |" * len(fractions)]
    for method in METHODS:
        lines.append(f"| {method} | " + " | ".join(_fmt(ap.get((method, f), math.nan)) for f in fractions) + " |")
    return "\n\n".join([
        f"## New objective: stream on an unseen surface ({result.surface!r})",
        f"Every impression on `{result.surface}` is removed from pre-training; the new head "
        f"`{result.surface}_stream` is then learned from a fraction of that surface's training log and "
        f"scored on its test impressions (oracle AP {_fmt(result.oracle_ap)}).",
        "\n".join(lines),
        "![AP of the new objective against its log size](learning_curve.png)",
        _crossover(result, fractions, ap),
        _old_heads(result),
    ])


def _fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"


def _crossover(result: NewObjectiveResult, fractions: list[float], ap: dict) -> str:
    better = [f for f in fractions
              if max(ap.get(("fine-tune, frozen encoder", f), math.nan), ap.get(("fine-tune, all layers", f), math.nan))
              > ap.get(("from scratch", f), math.nan)]
    if not better:
        return "Fine-tuning did not beat training from scratch at any log size measured here."
    return ("Fine-tuning beats training from scratch at " + ", ".join(f"{f:.0%}" for f in better)
            + " of the new surface's log" + (" — at every size measured." if len(better) == len(fractions) else "."))


def _old_heads(result: NewObjectiveResult) -> str:
    if not result.old_heads_after:
        return ""
    parts = []
    for target, before in result.old_heads_before.items():
        after = result.old_heads_after[target]
        parts.append(f"{target} {before:.4f} → {after:.4f} ({format_relative(relative_change(after, before))})")
    return ("Old heads on the other surfaces' test impressions, before and after fine-tuning all layers on "
            "100 % of the new log: " + "; ".join(parts) + ". (With a frozen encoder the old heads cannot change.)")


def _chart(result: NewObjectiveResult, path: Path) -> None:
    fig, ax = figure()
    for method in METHODS:
        points = sorted((p.fraction, p.ap) for p in result.points if p.method == method)
        ax.plot([f * 100 for f, _ in points], [a for _, a in points], marker="o", label=method)
    if not math.isnan(result.oracle_ap):
        ax.axhline(result.oracle_ap, color="black", ls="--", lw=0.8, label="oracle (true probabilities)")
    ax.set_xscale("log")
    ax.set_xticks([f * 100 for f in sorted({p.fraction for p in result.points})],
                  [f"{f:.0%}" for f in sorted({p.fraction for p in result.points})])
    ax.set_xlabel(f"share of the {result.surface!r} training log used")
    ax.set_ylabel("AP of the new objective")
    ax.set_title(f"New objective: stream on the unseen surface {result.surface!r}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.set_size_inches(9, 5)
    save_png(fig, path)
