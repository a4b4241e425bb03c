"""Peak memory and wall time of `unitarget synth` at given world sizes, each in a fresh process.

Runs ``python -m unitarget.cli synth`` under ``/usr/bin/time -v`` (GNU time) once per size and
prints its peak RSS ("Maximum resident set size"), wall and CPU seconds and the size of what it
wrote. The log is written a batch of hours at a time, so peak RSS should follow the latent world
(users, shows) and the batch, not ``--impressions``. Each output is deleted after its run unless
``--keep`` is given (a 20 M world is about 1.8 GB on disk).

    .venv/bin/python benchmarks/synth_memory.py --out /tmp/synth-bench                       # the default world
    .venv/bin/python benchmarks/synth_memory.py --out /tmp/synth-bench \\
        --size 2000000:50000:4000 --size 20000000:500000:20000 --size 50000000:500000:20000
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_TIME_FIELDS = {
    "peak_rss_kb": r"Maximum resident set size \(kbytes\): (\d+)",
    "wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
    "user_s": r"User time \(seconds\): ([\d.]+)",
    "system_s": r"System time \(seconds\): ([\d.]+)",
}


@dataclass(frozen=True)
class Size:
    """A world to generate: impressions, users, shows (``IMPRESSIONS:USERS:SHOWS`` on the command line)."""

    impressions: int
    users: int
    shows: int

    @classmethod
    def parse(cls, text: str) -> Size:
        """``"20000000:500000:20000"`` -> Size(20_000_000, 500_000, 20_000)."""
        impressions, users, shows = (int(part) for part in text.split(":"))
        return cls(impressions, users, shows)


def measure(size: Size, out: Path, seed: int) -> dict[str, float]:
    """Run one ``unitarget synth`` under GNU time; its peak RSS (GiB), seconds and bytes written."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "unitarget.cli", "synth", "--out", str(out),
               "--impressions", str(size.impressions), "--users", str(size.users), "--shows", str(size.shows),
               "--seed", str(seed)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    found = {name: re.search(pattern, done.stderr) for name, pattern in _TIME_FIELDS.items()}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise SystemExit(f"no {missing} in the output of /usr/bin/time -v:\n{done.stderr[-4000:]}")
    fields = {name: match.group(1) for name, match in found.items() if match is not None}
    return {
        "peak_rss_gib": int(fields["peak_rss_kb"]) / 2**20,
        "wall_s": _seconds(fields["wall"]),
        "cpu_s": float(fields["user_s"]) + float(fields["system_s"]),
        "written_gib": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**30,
    }


def _seconds(clock: str) -> float:
    """``"1:02:03.5"`` or ``"2:03.5"`` -> seconds."""
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def main() -> None:
    """Measure every ``--size`` in turn and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="scratch directory; one subdirectory per size")
    parser.add_argument("--size", type=Size.parse, action="append", help="IMPRESSIONS:USERS:SHOWS (repeatable); "
                        "default: the default world, 2000000:50000:4000")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep what each run wrote")
    args = parser.parse_args()
    print(f"{'impressions':>12} {'users':>8} {'shows':>6} {'peak RSS GiB':>12} {'wall s':>8} {'CPU s':>8} "
          f"{'written GiB':>11}", flush=True)  # fmt: skip
    for size in args.size or [Size(2_000_000, 50_000, 4_000)]:
        out = args.out / f"synth-{size.impressions}-{size.users}-{size.shows}"
        shutil.rmtree(out, ignore_errors=True)
        try:
            m = measure(size, out, args.seed)
        finally:
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        print(f"{size.impressions:>12,} {size.users:>8,} {size.shows:>6,} {m['peak_rss_gib']:>12.2f} "
              f"{m['wall_s']:>8.1f} {m['cpu_s']:>8.1f} {m['written_gib']:>11.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
