"""The version pointer: one small file in the models directory naming the version every worker serves.

Each worker process holds its own model copy, so a reload received by one worker has to reach the
others. The worker that received it loads and checks the new version, then moves the pointer (a
JSON file written to a temporary name, fsynced and renamed over the old one with ``os.replace``:
readers see the old pointer or the new one, never half of one), then switches itself. Every worker
looks at the pointer's ``stat`` twice a second and follows a new ``generation`` (``registry``).

Writers take an exclusive ``flock`` on a lock file beside it, so one reload or rollback runs at a
time across all workers of the directory. Both files start with a dot, which no version name may
(``registry._VERSION_NAME``), so neither can be mistaken for a version.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from unitarget.errors import UnitargetError

POINTER_FILE = ".serving-version.json"
LOCK_FILE = ".serving-version.lock"


@dataclass(frozen=True)
class Pointer:
    """The version to serve and its generation (one more on every move, so a repeated name still reads as a move)."""

    version: str
    generation: int


def stat_key(models_dir: Path) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of the pointer file, None without one: a cheap test that it moved
    (``os.replace`` gives every write a new inode)."""
    try:
        st = os.stat(models_dir / POINTER_FILE)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def read_pointer(models_dir: Path) -> Pointer | None:
    """The pointer of ``models_dir``, None where there is none yet; a file that is not one is an error naming it."""
    path = models_dir / POINTER_FILE
    try:
        data = json.loads(path.read_bytes())
        return Pointer(version=str(data["version"]), generation=int(data["generation"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UnitargetError(f"{path} is not a version pointer: {type(err).__name__}: {err}") from None


def write_pointer(models_dir: Path, version: str, generation: int) -> Pointer:
    """Point every worker at ``version`` (atomically: temporary file, fsync, ``os.replace``, fsync of the directory)."""
    path = models_dir / POINTER_FILE
    staging = models_dir / f"{POINTER_FILE}.{os.getpid()}.tmp"
    payload = {"version": version, "generation": generation, "written_by_pid": os.getpid(),
               "written_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
    try:
        with open(staging, "wb") as out:
            out.write(json.dumps(payload).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
        directory = os.open(models_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as err:
        staging.unlink(missing_ok=True)
        raise UnitargetError(f"cannot write the version pointer {path}: {err}; nothing was switched") from None
    return Pointer(version, generation)


@contextmanager
def exclusive(models_dir: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the directory's writer lock for the block; yields False (without the lock) when another process holds
    it and ``wait`` is False. The kernel drops the lock if its holder dies."""
    try:
        handle = open(models_dir / LOCK_FILE, "a+b")
    except OSError as err:
        raise UnitargetError(f"cannot open the version lock {models_dir / LOCK_FILE}: {err}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
