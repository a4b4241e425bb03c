"""Memory and speed of `unitarget score-audience` (and `predict`) on a large table, in a child process.

Writes a users table of N rows (user ids drawn from the model's vocabulary, a tenth unknown, with
country, age bucket and a history of up to 10 shows), runs the real CLI on it in a subprocess and
reports wall time, rows/s and the child's peak resident memory (getrusage). The point is that
memory stays flat as N grows: run it at two sizes.

    .venv/bin/python benchmarks/score_audience.py --model models/v1 --rows 10000000
    .venv/bin/python benchmarks/score_audience.py --model models/v1 --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CAMPAIGN = {"show_id": "s00010", "format": "audio", "slot": "pre_roll", "surface": "in_stream_audio"}


def write_users(model: Path, rows: int, path: Path, chunk: int = 1_000_000, seed: int = 0) -> None:
    """``rows`` users in row groups of ``chunk``, written chunk by chunk (this process stays small too)."""
    vocab = json.loads((model / "encoder.json").read_text())["vocabularies"]
    users = pa.array(vocab["user_id"]["values"] + [f"new-user-{i}" for i in range(5_000)])
    shows = pa.array(vocab["user_history_shows"]["values"])
    countries, ages = pa.array(vocab["user_country"]["values"]), pa.array(vocab["user_age_bucket"]["values"])
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, pa.schema([("user_id", pa.string()), ("user_country", pa.string()),
                                           ("user_age_bucket", pa.string()),
                                           ("user_history_shows", pa.list_(pa.string()))])) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            lengths = rng.integers(0, 11, n)
            offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
            tokens = shows.take(pa.array(rng.integers(0, len(shows), int(lengths.sum()))))
            writer.write_table(pa.table({
                "user_id": users.take(pa.array(rng.integers(0, len(users), n))),
                "user_country": countries.take(pa.array(rng.integers(0, len(countries), n))),
                "user_age_bucket": ages.take(pa.array(rng.integers(0, len(ages), n))),
                "user_history_shows": pa.ListArray.from_arrays(offsets, tokens),
            }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="export directory (unitarget export)")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        users, out = Path(work) / "users.parquet", Path(work) / "audience.parquet"
        t0 = time.perf_counter()
        write_users(args.model, args.rows, users)
        made = time.perf_counter() - t0
        command = [sys.executable, "-m", "unitarget.cli", "score-audience", "--model", str(args.model),
                   "--users", str(users), "--campaign", json.dumps(CAMPAIGN), "--out", str(out),
                   "--chunk-rows", str(args.chunk_rows), "--threads", str(args.threads)]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        scored = pq.read_metadata(out).num_rows
        size_mib = users.stat().st_size / 2**20
    assert scored == args.rows, (scored, args.rows)
    print(f"users table: {args.rows:,} rows, {size_mib:,.0f} MiB Parquet (written in {made:.0f} s)")
    print(f"score-audience: {seconds:.1f} s, {args.rows / seconds:,.0f} users/s, peak RSS {peak_mib:,.0f} MiB "
          f"(chunks of {args.chunk_rows:,}, {args.threads} ONNX Runtime threads)")


if __name__ == "__main__":
    main()
