"""Data-parallel training on one machine: 1 rank × 2 threads against 2 ranks × 1 thread (torchrun, gloo).

    python benchmarks/ddp_speed.py [--impressions 300000] [--work /tmp/unitarget-ddp-speed]

Writes a synthetic log (once), then trains the default model for one epoch (the same global batches, so the same
number of steps) with ``unitarget train`` as one process with ``train.threads = 2`` and through
``torchrun --standalone --nproc-per-node 2`` with ``train.threads = 1``, and reads each run's examples/s (the
loop's own figure: validation and checkpoints left out) and validation AP from its ``training.json``. Then, under
torchrun again, it times what DDP adds per step on 2 ranks: ``all_reduce`` of a float32 tensor of the model's
parameter count (the gradients DDP averages, in buckets overlapped with the backward: an upper bound on what it
costs) and of one scalar (the logged loss). On a machine shared with other work the figures move from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """[train]
max_epochs = 1
threads = {threads}
"""


def _run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _train(work: Path, log: Path, ranks: int) -> dict:
    name = f"{ranks}x{2 // ranks}"
    config = work / f"{name}.toml"
    config.write_text(CONFIG.format(threads=2 // ranks))
    train = ["-m", "unitarget", "train", "--data", str(log), "--out", str(work / name), "--config", str(config)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
    subprocess.run(["rm", "-rf", str(work / name)], check=True)
    wall = _run([sys.executable, *launcher, *train])
    record = json.loads((work / name / "training.json").read_text())
    epoch = record["history"][0]
    return {"ranks x threads": name, "examples_per_s": round(epoch["examples_per_s"]),
            "epoch_s": round(epoch["seconds"], 1), "wall_s": round(wall, 1),
            "valid_ap": round(record["best_valid_score"], 4), "parameters": record["parameters"],
            "train_rows": record["rows"]["train"]}


def _all_reduce_worker(parameters: int, repeats: int) -> None:
    """Under torchrun: median all_reduce times of a parameter-sized tensor and of a scalar; rank 0 prints them."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    timings = {}
    for name, size in (("gradients", parameters), ("loss scalar", 1)):
        tensor, times = torch.randn(size), []
        for _ in range(repeats + 2):
            dist.barrier()
            started = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - started)
        timings[f"all_reduce {name} ms"] = round(statistics.median(times[2:]) * 1000, 3)
    if dist.get_rank() == 0:
        print(json.dumps(timings))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=300_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/unitarget-ddp-speed"))
    parser.add_argument("--all-reduce", type=int, default=None, help=argparse.SUPPRESS)  # the torchrun worker
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.all_reduce is not None:
        return _all_reduce_worker(args.all_reduce, args.repeats)
    from unitarget.synth import WorldParams, write_synthetic_dataset

    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "world" / "impressions.parquet"
    if not log.is_file():
        write_synthetic_dataset(args.work / "world", WorldParams(n_impressions=args.impressions, seed=0))
    runs = [_train(args.work, log, ranks) for ranks in (1, 2)]
    timing = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             __file__, "--all-reduce", str(runs[0]["parameters"]), "--repeats", str(args.repeats)],
                            check=True, capture_output=True, text=True, env=os.environ)
    print(json.dumps({"runs": runs, "per step, 2 ranks": json.loads(timing.stdout.strip().splitlines()[-1]),
                      "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
