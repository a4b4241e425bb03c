"""Peak memory and speed of training from a log on disk: streamed (the default) against in memory.

    python benchmarks/streaming_memory.py LOG [LOG ...] [--modes streamed,memory] [--epochs 1] [--threads 2]
                                          [--steps N] [--out results/bench-streaming.json]

Each (log, mode) runs in a fresh process under ``/usr/bin/time -v``, so "Maximum resident set
size" is that run's peak alone:

- ``streamed``: ``pipeline.train(path)``: validate, split and encode chunk by chunk into the
  encoded cache (built fresh: the cache directory is removed first), then train through shuffle
  windows.
- ``memory``: ``pipeline.train(load_log(path))``: the whole log as one Arrow table, encoded into
  one tensor batch (the path of a table given to the library; what ``unitarget train`` did before).

It prints, per run, the peak RSS, wall seconds, the cache build's seconds (streamed), training
examples/s of the first epoch (as the loop measures it, validation excluded; with ``--steps N``
over its first N steps, and no validation score) and the best validation score. Run it with nothing else on the machine; quote medians of repeated runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import json, sys, time
from unitarget.config import Config, merge
from unitarget.pipeline import load_log, train
from unitarget.streaming import prepare_cache
from unitarget.training.hooks import SilentHooks
log, out, mode, epochs, threads, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
class Stop(Exception):
    pass
class Hooks(SilentHooks):  # with a step budget: stop after it, keep the loop's own examples/s
    speed = None
    def on_step(self, epoch, step, steps_, loss, examples_per_s):
        self.speed = examples_per_s
        if steps and step >= steps:
            raise Stop
hooks = Hooks()
config = merge(Config(), {"train": {"max_epochs": epochs, "threads": threads}})
import torch; torch.set_num_threads(threads)
started = time.perf_counter()
build = None
if mode == "streamed":
    from pathlib import Path
    prepare_cache(log, config, Path(out).parent / ("." + Path(out).name + ".cache"))
    build = time.perf_counter() - started
    data = log
else:
    data = load_log(log, config)
try:
    model = train(data, out, config, hooks=hooks)
    first, score, rows = model.record.history[0]["examples_per_s"], model.record.best_valid_score, model.record.span.train_rows
except Stop:
    first, score, rows = hooks.speed, float("nan"), -1
print("RESULT " + json.dumps({"build_s": build, "examples_per_s": first, "best_valid_score": score,
                              "train_rows": rows}))
"""


def run(log: str, mode: str, epochs: int, threads: int, steps: int) -> dict:
    """One training run in a fresh process under /usr/bin/time -v."""
    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    try:
        proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", _CHILD, log, str(work / "run"), mode,
                               str(epochs), str(threads), str(steps)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} run on {log} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", proc.stderr).group(1).strip()
        cache_bytes = sum(f.stat().st_size for f in work.rglob("*.bin"))
        return {"log": log, "mode": mode, "peak_rss_gib": rss_kb / 2**20, "wall": wall,
                "cache_gib": cache_bytes / 2**30, **result}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--modes", default="streamed,memory")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps of the first epoch "
                                                              "(0: train --epochs whole epochs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    results = []
    for log in args.logs:
        for mode in args.modes.split(","):
            r = run(log, mode, args.epochs, args.threads, args.steps)
            results.append(r)
            build = f"{r['build_s']:.0f} s build, " if r["build_s"] is not None else ""
            print(f"{Path(log).name:<28} {mode:<9} peak RSS {r['peak_rss_gib']:.2f} GiB  wall {r['wall']}  {build}"
                  f"{r['examples_per_s']:,.0f} ex/s  valid {r['best_valid_score']:.4f}  "
                  f"train rows {r['train_rows']:,}  cache {r['cache_gib']:.2f} GiB", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
