"""``unitarget ablate --study camoe``: run the CAMoE study and write its report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from unitarget.config import Config
from unitarget.io import atomic_write_text
from unitarget.reports.camoe import write_camoe_outputs
from unitarget.studies.camoe import measure_camoe
from unitarget.studies.camoe_arms import Arm


def run_camoe_study(
    data: str | Path | pa.Table,
    out_dir: Path,
    config: Config,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    arms: Sequence[Arm] | None = None,
    rows: int | None = None,
    cost_steps: int = 30,
    resume: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Run the study on ``data`` and write into ``out_dir``: ``CAMOE.md`` (the report),
    ``camoe_table.md``/``.csv`` (AP per arm, label and format, mean ± std over seeds),
    ``camoe_runs.csv`` (every seed), ``camoe_pareto.png`` and ``camoe_cost.md``/``.csv``.

    Each finished (arm, seed) is appended to ``camoe_runs.jsonl`` at once; ``resume`` keeps the
    ones found there (same data, size and configuration assumed) and trains only the rest. The
    facts are saved as ``camoe_facts.json`` before anything is rendered: re-render with
    ``studies.camoe_results.facts_from_json`` + ``reports.camoe.write_camoe_outputs`` without
    training again."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = measure_camoe(data, config, journal=out_dir / "camoe_runs.jsonl", seeds=seeds, arms=arms,
                          rows=rows, cost_steps=cost_steps, resume=resume, log=log)
    report = write_camoe_outputs(facts, out_dir)
    atomic_write_text(out_dir / "camoe_config.json", config.model_dump_json(indent=2) + "\n")
    return report
