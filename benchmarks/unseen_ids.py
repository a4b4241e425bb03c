"""How stale a model selected on validation days is: the share of the test days' impressions whose id it never saw.

    python benchmarks/unseen_ids.py LOG [LOG ...] [--columns creative_id,campaign_id,show_id]

For each contract log, split as ``reproduce`` and ``train`` split it (the newest ``evaluation.test_days`` are the
test days, the training log's newest ``train.valid_days`` its validation days), and for each source and id column:
the share of the test days' rows whose id never occurs in the fit days (what a model that publishes the selected
model has trained on) and in the whole training log (what ``train.refit`` trains on). Null ids are not counted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.config import Config
from unitarget.data.split import split_newest_days
from unitarget.io import read_log
from unitarget.pipeline import load_log, split_training_log


def unseen_shares(log: pa.Table, config: Config, column: str) -> dict[str, tuple[float, float, int]]:
    """Per source: (share of test rows with an id the fit days lack, share with one the training log lacks, rows)."""
    testing = split_newest_days(log, config.evaluation.test_days, purpose="testing", setting="evaluation.test_days")
    fit = split_training_log(testing.older, config).older
    seen_fit = pc.unique(fit.column(column).drop_null())
    seen_all = pc.unique(testing.older.column(column).drop_null())
    out = {}
    test = testing.newest.filter(pc.is_valid(testing.newest.column(column)))
    for source in pc.unique(test.column(contract.SOURCE)).to_pylist():
        rows = test.filter(pc.equal(test.column(contract.SOURCE), source)).column(column)
        if len(rows):
            out[source] = (1 - float(np.mean(pc.is_in(rows, value_set=seen_fit).to_numpy(zero_copy_only=False))),
                           1 - float(np.mean(pc.is_in(rows, value_set=seen_all).to_numpy(zero_copy_only=False))),
                           len(rows))
    return out


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="contract logs (Parquet files or directories)")
    parser.add_argument("--columns", default="creative_id,campaign_id,show_id", help="comma-separated id columns")
    args = parser.parse_args(argv)
    config = Config()
    lines = ["| log | column | source | test rows | unseen in the fit days | unseen in the training log |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for path in args.logs:
        log = load_log(read_log(path), config)
        for column in args.columns.split(","):
            for source, (fit, whole, rows) in sorted(unseen_shares(log, config, column).items()):
                lines.append(f"| {path} | {column} | {source} | {rows:,} | {fit:.1%} | {whole:.1%} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
