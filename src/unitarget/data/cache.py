"""The on-disk cache of encoded rows that ``train`` reads a log larger than memory from.

A log is validated, split and encoded once, chunk by chunk (``unitarget.streaming``), into *shards*: one per
training source for the fit rows (``train/<source>/``) and one for the validation rows
(``valid/``). A shard is a directory of flat little-endian arrays, one file per field of ``Batch``
(``ids.bin`` int32 (N, C), ``dense.bin`` float32 (N, D), ``labels.bin`` float32 (N, L),
``label_mask.bin``, ``source.bin``, ``tier.bin``, ``format.bin`` one byte each), appended chunk
by chunk and read back by row range with ``numpy.fromfile``: plain reads into ordinary memory, so
what a reader holds is what it asked for, never a mapping of the whole file.

The cache's directory name is its *key*: a hash of the log's files (path, size, modification
time), of every setting that decides the encoding or the split, and of the cache format. A
changed log or setting has another key, so a stale cache is never read; ``manifest.json`` (the
fitted encoder, the cut, the rows of each shard) is checked against the files' sizes when
opened, and a cache is published by renaming a finished directory into place, so a build that a
kill cuts short is never taken for a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitarget.data.batch import Batch, Features, Targets
from unitarget.data.features import FeatureEncoder
from unitarget.errors import UnitargetError
from unitarget.io import atomic_write_json, log_files

CACHE_FORMAT = 1
MANIFEST_FILE = "manifest.json"
VALID_PART = "valid"
#: field -> on-disk dtype; the widths come from the encoder's layout and labels
_DTYPES: dict[str, np.dtype] = {
    "ids": np.dtype("<i4"), "dense": np.dtype("<f4"), "labels": np.dtype("<f4"), "label_mask": np.dtype("u1"),
    "source": np.dtype("i1"), "tier": np.dtype("i1"), "format": np.dtype("i1"),
}
_TARGET_FIELDS = ("labels", "label_mask", "source", "tier", "format")


def row_widths(encoder: FeatureEncoder) -> dict[str, int]:
    """Values per row of each field for rows encoded by ``encoder``."""
    layout, labels = encoder.layout_, len(encoder.labels)
    return {"ids": layout.ids_width, "dense": layout.dense_dim, "labels": labels, "label_mask": labels,
            "source": 1, "tier": 1, "format": 1}


def row_bytes(widths: Mapping[str, int]) -> int:
    """Bytes one encoded row takes in the cache (and in memory once read)."""
    return sum(_DTYPES[name].itemsize * width for name, width in widths.items())


def cache_key(data: str | Path, settings: Mapping[str, Any]) -> str:
    """The key of the cache of ``data`` encoded with ``settings`` (JSON types): a change in any file's path, size or
    modification time, or in any setting, gives another key."""
    files = [(str(Path(f).resolve()), (st := os.stat(f)).st_size, st.st_mtime_ns) for f in log_files(data)]
    payload = {"format": CACHE_FORMAT, "files": files, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _arrays(batch: Batch) -> dict[str, np.ndarray]:
    """``batch``'s tensors as the cache's on-disk arrays (narrow dtypes for the small integers)."""
    t = batch.targets
    if t.format is None:
        raise ValueError("cached rows need Targets.format (FeatureEncoder sets it)")
    return {"ids": batch.features.ids.numpy(), "dense": batch.features.dense.numpy(),
            "labels": t.labels.numpy(), "label_mask": t.label_mask.numpy().view(np.uint8),
            "source": t.source.numpy().astype(np.int8), "tier": t.tier.numpy().astype(np.int8),
            "format": t.format.numpy().astype(np.int8)}


def to_batch(arrays: Mapping[str, np.ndarray]) -> Batch:
    """A ``Batch`` of rows read from the cache (the small integers widened back to int64 for ``index_select``)."""
    return Batch(Features(torch.from_numpy(arrays["ids"]), torch.from_numpy(arrays["dense"])), to_targets(arrays))


def to_targets(arrays: Mapping[str, np.ndarray]) -> Targets:
    """The ``Targets`` of rows read from the cache."""
    def wide(name: str) -> torch.Tensor:
        return torch.from_numpy(arrays[name].astype(np.int64).reshape(-1))

    return Targets(labels=torch.from_numpy(arrays["labels"]),
                   label_mask=torch.from_numpy(arrays["label_mask"].view(np.bool_)),
                   source=wide("source"), tier=wide("tier"), format=wide("format"))


class ShardWriter:
    """Appends encoded rows to one shard's field files."""

    def __init__(self, directory: Path, widths: Mapping[str, int]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.widths, self.rows = directory, dict(widths), 0
        self._files = {name: open(directory / f"{name}.bin", "wb") for name in _DTYPES}

    def append(self, batch: Batch) -> None:
        """Write ``batch``'s rows after the ones written so far."""
        for name, array in _arrays(batch).items():
            np.ascontiguousarray(array, dtype=_DTYPES[name]).tofile(self._files[name])
        self.rows += len(batch)

    def abort(self) -> None:
        """Close the files without syncing (the build is being thrown away)."""
        for file in self._files.values():
            file.close()

    def close(self) -> int:
        """Flush and close the files; the shard's row count."""
        for file in self._files.values():
            file.flush()
            os.fsync(file.fileno())
            file.close()
        return self.rows


@dataclass(frozen=True)
class Shard:
    """One shard of a cache, read by row range."""

    directory: Path
    rows: int
    widths: dict[str, int]

    def read(self, start: int, stop: int, fields: tuple[str, ...] = tuple(_DTYPES)) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of ``fields`` as (rows, width) arrays."""
        stop = min(stop, self.rows)
        out = {}
        for name in fields:
            dtype, width = _DTYPES[name], self.widths[name]
            flat = np.fromfile(self.directory / f"{name}.bin", dtype=dtype, count=(stop - start) * width,
                               offset=start * width * dtype.itemsize)
            out[name] = flat.reshape(stop - start, width)
        return out

    def chunks(self, rows: int) -> Iterator[Batch]:
        """The shard's rows in order, ``rows`` at a time."""
        for start in range(0, self.rows, rows):
            yield to_batch(self.read(start, start + rows))

    def features(self, rows: int) -> Iterator[Features]:
        """The shard's features in order, ``rows`` at a time (targets not read)."""
        for start in range(0, self.rows, rows):
            arrays = self.read(start, start + rows, ("ids", "dense"))
            yield Features(torch.from_numpy(arrays["ids"]), torch.from_numpy(arrays["dense"]))

    def targets(self, rows: int = 1 << 20) -> Iterator[Targets]:
        """The shard's targets in order, ``rows`` at a time (features not read)."""
        for start in range(0, self.rows, rows):
            yield to_targets(self.read(start, start + rows, _TARGET_FIELDS))

    def check(self) -> bool:
        """Whether every field file holds exactly ``rows`` rows."""
        return all(
            (path := self.directory / f"{name}.bin").is_file()
            and path.stat().st_size == self.rows * self.widths[name] * dtype.itemsize
            for name, dtype in _DTYPES.items()
        )


@dataclass(frozen=True)
class EncodedCache:
    """A published cache: the fitted encoder, the fit rows' shards by source, the validation shard, and what the
    build recorded (``info``: the cut, the data span, the rows per part)."""

    path: Path
    key: str
    encoder: FeatureEncoder
    train: dict[str, Shard]
    valid: Shard
    info: dict[str, Any]

    @property
    def train_rows(self) -> int:
        """Fit rows over every source."""
        return sum(shard.rows for shard in self.train.values())

    @classmethod
    def open(cls, path: Path) -> "EncodedCache | None":
        """The cache at ``path``, or None when there is none or it is not whole (then it is rebuilt)."""
        try:
            manifest = json.loads((path / MANIFEST_FILE).read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("format") != CACHE_FORMAT or manifest.get("key") != path.name:
            return None
        widths = manifest["widths"]
        train = {s: Shard(path / "train" / s, rows, widths) for s, rows in manifest["train_rows"].items()}
        valid = Shard(path / VALID_PART, manifest["valid_rows"], widths)
        if not all(shard.check() for shard in (*train.values(), valid)):
            return None
        return cls(path, path.name, FeatureEncoder.from_dict(manifest["encoder"]), train, valid, manifest["info"])


class CacheBuild:
    """A cache being written in a temporary directory beside its place, published by one rename."""

    def __init__(self, root: Path, key: str, encoder: FeatureEncoder) -> None:
        self.root, self.key, self.encoder = root, key, encoder
        self.tmp = root / f".{key}.building-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.widths = row_widths(encoder)
        self.train: dict[str, ShardWriter] = {}
        self.valid = ShardWriter(self.tmp / VALID_PART, self.widths)

    def append_train(self, source: str, batch: Batch) -> None:
        """Fit rows of one source."""
        if source not in self.train:
            self.train[source] = ShardWriter(self.tmp / "train" / source, self.widths)
        self.train[source].append(batch)

    def publish(self, info: dict[str, Any]) -> EncodedCache:
        """Close the shards, write the manifest, rename the directory into place and remove the root's older caches
        (another key: another log or settings, never read again; a directory without a manifest is not a cache of
        this root and is left alone: the refit's root inside it, ``pipeline.train``)."""
        manifest = {"format": CACHE_FORMAT, "key": self.key, "widths": self.widths, "encoder": self.encoder.to_dict(),
                    "train_rows": {s: w.close() for s, w in self.train.items()}, "valid_rows": self.valid.close(),
                    "info": info}
        atomic_write_json(self.tmp / MANIFEST_FILE, manifest)
        final = self.root / self.key
        shutil.rmtree(final, ignore_errors=True)
        os.replace(self.tmp, final)
        for other in self.root.iterdir():
            if other.name != self.key and not other.name.startswith(".") and (other / MANIFEST_FILE).is_file():
                shutil.rmtree(other, ignore_errors=True)
        cache = EncodedCache.open(final)
        if cache is None:
            raise UnitargetError(f"the encoded cache written to {final} does not read back")
        return cache

    def abandon(self) -> None:
        """Remove the partial build (a bad row or an interruption): nothing of it is ever read."""
        for writer in (*self.train.values(), self.valid):
            writer.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)
