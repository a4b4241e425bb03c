"""Optimizer step time for an embedding table of 1 M to 10 M+ rows: dense Adam against lazy
(row-sparse) Adam, with the rows a 2,048-row batch of the default model touches.

    python benchmarks/embedding_updates.py [--rows 1000000,10000000] [--dim 16] [--steps 20]

Each step: the table's gradient of one batch (61 tokens per row, ids drawn Zipf-like, as user
and show ids are) is produced by the project's fused lookup (``models.embeddings.pooled_lookup``),
then one optimizer step; the time of lookup + backward + step is reported per mode, and the
memory the table and Adam's two moments take.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from unitarget.models.embeddings import pooled_lookup
from unitarget.training.lazy_adam import LazyAdam

TOKENS, BATCH = 61, 2_048


def _ids(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Zipf-like ids in [1, rows): a few very frequent, a long tail."""
    u = torch.rand(BATCH * TOKENS, generator=generator)
    return (1 + (rows - 1) ** u).long().clamp(max=rows - 1).view(BATCH, TOKENS)


def _time(rows: int, dim: int, steps: int, lazy: bool) -> dict[str, float]:
    table = torch.nn.Parameter(torch.randn(rows, dim) * 0.05)
    optimizer = LazyAdam([table], lr=1e-3) if lazy else torch.optim.Adam([table], lr=1e-3, foreach=True)
    generator = torch.Generator().manual_seed(0)
    slot = torch.arange(TOKENS)
    weights = torch.ones(BATCH, TOKENS)
    times, touched = [], []
    for step in range(steps + 2):
        ids = _ids(rows, generator)
        started = time.perf_counter()
        out = pooled_lookup(table, ids, weights, slot, TOKENS, [], sparse_grad=lazy)
        optimizer.zero_grad(set_to_none=True)
        out.square().sum().backward()
        optimizer.step()
        if step >= 2:  # the first steps allocate Adam's state
            times.append(time.perf_counter() - started)
            touched.append(int(torch.unique(ids).numel()))
    return {"step_ms": round(statistics.median(times) * 1000, 2), "touched_rows": int(statistics.median(touched))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        dense, lazy = _time(rows, args.dim, args.steps, False), _time(rows, args.dim, args.steps, True)
        results.append({"rows": rows, "dim": args.dim, "table_and_adam_state_mb": round(3 * rows * args.dim * 4 / 2**20),
                        "dense_step_ms": dense["step_ms"], "lazy_step_ms": lazy["step_ms"],
                        "touched_rows": lazy["touched_rows"]})
    print(json.dumps({"batch": BATCH, "tokens_per_row": TOKENS, "threads": args.threads, "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
