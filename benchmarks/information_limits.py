"""What the training days allow, in two readings: the informed oracle (``evaluation.informed``: shows known only
through their logged impressions, users known exactly) and the same oracle with each user's propensities learned
from the same impressions too (``InformedOracle.fit(learn_users=True)``: a listener with a few dozen impressions is
known far less well than a show with hundreds). Test-days AP per head beside the full oracle's, on the worlds of
``robustness.py`` (the same logs, under ``--out``), and the AP of any setup trained there by ``robustness.py``.

    python benchmarks/information_limits.py --out /work/rb --worlds shipped,small-default
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import SHIPPED, WORLDS, WorldSpec, ensure_world  # noqa: E402

from unitarget import contract  # noqa: E402
from unitarget.config import Config  # noqa: E402
from unitarget.data.split import split_newest_days  # noqa: E402
from unitarget.evaluation.heads import channel_targets  # noqa: E402
from unitarget.evaluation.informed import InformedOracle  # noqa: E402
from unitarget.evaluation.metrics import average_precision  # noqa: E402
from unitarget.evaluation.world_rows import label_arrays  # noqa: E402
from unitarget.io import read_log  # noqa: E402
from unitarget.pipeline import load_log  # noqa: E402
from unitarget.synth import World  # noqa: E402

#: The heads of robustness.md: the paper's two channels and every other head on all impressions.
TARGETS = channel_targets(Config())
HEADS = tuple(target.name for target in TARGETS)


def head_aps(probabilities: dict[str, np.ndarray], labels: dict[str, np.ndarray], source: np.ndarray) -> dict:
    """head -> AP of ``probabilities`` (label -> (n,)) on the head's rows: its label observed, its source."""
    out = {}
    for target in TARGETS:
        keep = ~np.isnan(labels[target.label]) & (True if target.source is None else source == target.source)
        out[target.name] = average_precision(labels[target.label][keep], probabilities[target.label][keep])
    return out


def trained_aps(out: Path, world: str) -> dict[str, dict[str, float]]:
    """setup -> head -> mean test AP over the seeds robustness.py stored for ``world``."""
    found = {}
    for setup in sorted((out / "cells" / world).glob("*")):
        seeds = [json.loads(f.read_text())["test"]["rows"] for f in sorted(setup.glob("seed*.json"))]
        aps = {h: float(np.mean([r["ap"] for rows in seeds for r in rows if r["target"] == h and r["segment"] == "all"]))
               for h in HEADS}
        found[setup.name] = aps
    return found


def limits(out: Path, spec: WorldSpec) -> dict:
    """The three oracles' test-days AP per head on ``spec``'s world, and the seconds each fit took."""
    config = Config()
    data = ensure_world(out, spec, False, print)
    table = load_log(read_log(data / "impressions.parquet"), config)
    testing = split_newest_days(table, config.evaluation.test_days, purpose="testing", setting="evaluation.test_days")
    world, test = World.load(data / "world"), testing.newest
    labels = label_arrays(test)
    source = test.column(contract.SOURCE).to_numpy(zero_copy_only=False)
    truth = {target.label: test.column(contract.true_probability_column(target.label)).to_numpy(zero_copy_only=False)
             for target in TARGETS}
    result = {"oracle": head_aps(truth, labels, source)}
    for name, learn_users in (("informed", False), ("informed, users learned", True)):
        started = time.perf_counter()
        oracle = InformedOracle.fit(world, testing.older, learn_users=learn_users)
        result[name] = head_aps(oracle.probabilities(test), labels, source)
        result[f"{name} seconds"] = time.perf_counter() - started
    return result


def table(out: Path, spec: WorldSpec, found: dict) -> str:
    """Markdown: one row per oracle and trained setup, AP and its share of the oracle's per head."""
    oracle = found["oracle"]
    lines = [f"### {spec.name}", "", "| | " + " | ".join(HEADS) + " |", "| --- |" + " ---: |" * len(HEADS)]
    rows = {k: v for k, v in found.items() if isinstance(v, dict)} | trained_aps(out, spec.name)
    for name, aps in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{aps[h]:.4f} ({aps[h] / oracle[h]:.3f})" for h in HEADS) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/robustness"), help="robustness.py's --out")
    parser.add_argument("--worlds", default="shipped", help="comma-separated names of robustness.WORLDS, or shipped")
    args = parser.parse_args(argv)
    by_name = {w.name: w for w in (*WORLDS, SHIPPED)}
    unknown = [w for w in args.worlds.split(",") if w not in by_name]
    if unknown:
        parser.error(f"unknown worlds {unknown}; choose from {sorted(by_name)}")
    parts = []
    for name in args.worlds.split(","):
        found = limits(args.out, by_name[name])
        parts.append(table(args.out, by_name[name], found))
        print(parts[-1], flush=True)
        print({k: round(v, 1) for k, v in found.items() if k.endswith("seconds")}, flush=True)
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
