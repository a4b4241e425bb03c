"""A log on disk made ready for training without ever holding it: three streaming passes that end
in the encoded cache (``data.cache``).

1. **Scan**: every chunk is validated against the contract (a bad row stops the build, named by
   its row in the whole log), and the oldest and newest impression of the training sources' rows
   give the validation cut (``data.split.Cut``: the same cut, short-log rule included, as for the
   whole table).
2. **Fit**: the feature encoder is fitted on the rows before the cut, chunk by chunk
   (``FeatureEncoder.fit_chunks``: vocabularies counted across chunks), while the rows on each
   side of the cut are counted per source for the split's checks.
3. **Encode**: each chunk's fit rows are encoded into their source's shard and its validation rows
   into the validation shard.

Memory is that of a few chunks (``stream.chunk_rows``) plus the encoder's vocabularies, whatever
the log's length. A cache whose key matches (same files, same settings) is reused as it is: a
rerun, ``--resume`` and every rank of a data-parallel job read the one built first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.config import Config
from unitarget.data.cache import CacheBuild, EncodedCache, cache_key
from unitarget.data.features import FeatureEncoder
from unitarget.data.logs import training_rows, validated_chunks
from unitarget.data.split import Cut, micros, source_sides
from unitarget.errors import UnitargetError
from unitarget.runs import DataSpan
from unitarget.training.setup import encoder_for
from unitarget.training.tasks import labels_of

log = logging.getLogger("unitarget")

#: Told the pass (``"scan"``, ``"fit"``, ``"encode"``) and the log rows it has read so far.
Progress = Callable[[str, int], None]
_SETTING = "train.valid_days"
#: The refit's cache root, inside the run's (``train.refit`` on a log on disk).
REFIT_CACHE = "refit"


def cache_settings(config: Config) -> dict[str, Any]:
    """Every setting that decides what the cache holds: features, sources, labels, shared vocabularies, the
    validation window and the chunking of the fit (the numeric statistics' rounding)."""
    return {"features": config.features.model_dump(mode="json"), "sources": list(config.sources),
            "training_sources": list(config.training_sources), "labels": list(labels_of(config.tasks)),
            "shared": config.shared_vocabularies(), "valid_days": config.train.valid_days,
            "chunk_rows": config.stream.chunk_rows}


def prepare_cache(data: str | Path, config: Config, root: Path, progress: Progress | None = None, *,
                  refit: bool = False) -> EncodedCache:
    """The encoded cache of ``data`` under ``root``: the one built before if its key matches, else a new one.
    ``refit`` (``train.refit``): the encoder is fitted on every training row and they all go to the fit shards, the
    validation days' too; the validation shard is empty; it lives in ``root / REFIT_CACHE``."""
    if refit:  # a root of its own: publishing a cache removes the other caches of its root
        root = root / REFIT_CACHE
    key = cache_key(data, cache_settings(config) | {"refit": refit})
    found = EncodedCache.open(root / key)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda phase, rows: None)
    cut = _scan(data, config, report)
    encoder, span = _fit(data, config, cut, report, refit)
    build = CacheBuild(root, key, encoder)
    try:
        for table, older, newest in _split_chunks(data, config, cut, report, "encode"):
            fitted = table if refit else older
            for source in np.unique(_sources(fitted)):
                build.append_train(str(source), encoder.transform(fitted.filter(pc.equal(
                    fitted.column(contract.SOURCE).cast(pa.string()), source))))
            if newest.num_rows and not refit:
                build.valid.append(encoder.transform(newest))
        return build.publish({"cut": {**cut.to_dict(), "at": cut.at}, "span": asdict(span)})
    except BaseException:
        build.abandon()
        raise


def _scan(data: str | Path, config: Config, report: Progress) -> Cut:
    """Pass 1: validate every row; the cut from the training rows' oldest and newest impression."""
    oldest, newest, read = None, None, 0
    for _, chunk in validated_chunks(data, config, config.stream.chunk_rows):
        read += chunk.num_rows
        ts = micros(training_rows(chunk, config, required=False))
        if ts.size:
            oldest = int(ts.min()) if oldest is None else min(oldest, int(ts.min()))
            newest = int(ts.max()) if newest is None else max(newest, int(ts.max()))
        report("scan", read)
    if oldest is None or newest is None:
        raise UnitargetError(f"the log has no impressions from the sources the tasks learn from: "
                             f"{config.training_sources}")
    return Cut.plan(oldest, newest, config.train.valid_days, purpose="validation", setting=_SETTING)


def _fit(data: str | Path, config: Config, cut: Cut, report: Progress,
         refit: bool) -> tuple[FeatureEncoder, DataSpan]:
    """Pass 2: the encoder fitted on the rows before the cut (``refit``: on every training row); the split checked as
    ``split_newest_days`` checks it."""
    sides: dict[str, list[int]] = {}
    ranges = {"older": _Range(), "newest": _Range()}

    def fit_rows() -> Iterator[pa.Table]:
        for table, older, newest in _split_chunks(data, config, cut, report, "fit"):
            for source, counts in source_sides(table, cut.newest(table)).items():
                total = sides.setdefault(source, [0, 0])
                total[0], total[1] = total[0] + counts[0], total[1] + counts[1]
            ranges["older"].add(older)
            ranges["newest"].add(newest)
            fitted = table if refit else older
            if fitted.num_rows:
                yield fitted

    encoder = encoder_for(config).fit_chunks(fit_rows())
    held, rows = ranges["newest"].rows, ranges["older"].rows + ranges["newest"].rows
    cut.check(held, rows, purpose="validation", setting=_SETTING)
    cut.check_sources({s: (a, b) for s, (a, b) in sides.items()}, _SETTING)
    if cut.note is not None:
        log.warning(cut.note)
    span = DataSpan(ranges["older"].rows, held, ranges["older"].iso(), ranges["newest"].iso())
    return encoder, span


def _split_chunks(data: str | Path, config: Config, cut: Cut, report: Progress,
                  phase: str) -> Iterator[tuple[pa.Table, pa.Table, pa.Table]]:
    """(training rows, those before the cut, those in the window) of each chunk of a log validated by the scan."""
    read = 0
    for _, chunk in validated_chunks(data, config, config.stream.chunk_rows, validate=False):
        read += chunk.num_rows
        table = training_rows(chunk, config, required=False)
        newest = pa.array(cut.newest(table))
        yield table, table.filter(pc.invert(newest)), table.filter(newest)
        report(phase, read)


def _sources(table: pa.Table) -> np.ndarray:
    return table.column(contract.SOURCE).cast(pa.string()).to_numpy(zero_copy_only=False)


class _Range:
    """Rows counted and the oldest and newest impression seen, across chunks."""

    def __init__(self) -> None:
        self.rows, self.oldest, self.newest = 0, None, None

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        ts = micros(table)
        self.rows += table.num_rows
        self.oldest = int(ts.min()) if self.oldest is None else min(self.oldest, int(ts.min()))
        self.newest = int(ts.max()) if self.newest is None else max(self.newest, int(ts.max()))

    def iso(self) -> tuple[str, str]:
        """ISO strings, as ``data.split.time_range`` writes them for a table."""
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        return tuple((epoch + timedelta(microseconds=v)).isoformat() for v in (self.oldest, self.newest))  # type: ignore[return-value]
