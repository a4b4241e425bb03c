"""Publishing a converted dataset: ``impressions.parquet`` and ``README.md`` appear together or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from unitarget.errors import UnitargetError
from unitarget.io import publish_directory

__all__ = ["LOG_FILE", "README_FILE", "write_dataset"]

LOG_FILE = "impressions.parquet"
README_FILE = "README.md"


def write_dataset(out: Path, table: pa.Table, readme: str) -> Path:
    """Write the log and its README into a staging directory, then move it onto ``out``.

    A failure before the move leaves an earlier output as it was. ``out`` is replaced as a whole,
    so a directory holding anything but an adapter's two files is refused rather than deleted.
    """
    out = Path(out).expanduser()
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (LOG_FILE, README_FILE)) if out.is_dir() else []
        if not out.is_dir() or foreign:
            what = "is a file" if not out.is_dir() else f"holds other files ({', '.join(foreign[:5])})"
            raise UnitargetError(f"--out {str(out)!r} {what}: choose a new or an adapter's own directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the output is an ordinary directory
        pq.write_table(table, staging / LOG_FILE)
        (staging / README_FILE).write_text(readme, encoding="utf-8")
        publish_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / LOG_FILE
