"""``unitarget score-audience``: every user of a table scored for one campaign, in bounded memory.

For campaign planning: which listeners would this show's ad (or promotion) reach, with what
probability per task. The users table needs ``user_id`` and may carry the contract's other user
columns (country, age bucket, history, follows); the campaign gives the content, creative and
context fields once. Rows are read as a stream of record batches of ``chunk_rows`` (with read-ahead
limited to one batch), each encoded by the saved encoder, scored by ONNX Runtime and appended to the
output as a Parquet row group, so memory stays at a few chunks whatever the table's size. The output
(``user_id`` and ``p_<task>``, in input order) is written to a temporary file and renamed into place
only when complete.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import ValidationError, model_validator

from unitarget import contract
from unitarget.errors import ConfigError, UnitargetError
from unitarget.io import atomic_output
from unitarget.serving.runtime import ExportedModel, load_exported
from unitarget.serving.schemas import Candidate, Context
from unitarget.serving.tables import CANDIDATE_FIELDS, USER_FIELDS, constant_columns, context_columns

DEFAULT_CHUNK_ROWS = 65_536


class CampaignSpec(Candidate, Context):
    """One campaign: the candidate's content and creative fields plus the context, flat.

    Example: {"show_id": "s00010", "campaign_id": "c00030", "creative_id": "cr000076",
    "format": "video", "slot": "pre_roll", "surface": "in_stream_video"}.
    """

    @model_validator(mode="after")
    def _no_extra_features(self) -> "CampaignSpec":
        """Audience chunks carry the standard columns only; extra features would be ignored."""
        if self.features is not None:
            raise ValueError("audience scoring reads no extra features; leave 'features' out")
        return self


@dataclass(frozen=True)
class AudienceReport:
    """What one audience-scoring run wrote: the output path, rows scored, the tasks (probability columns) and the
    seconds it took."""

    out: Path
    rows: int
    tasks: tuple[str, ...]
    seconds: float


def parse_campaign(spec: str | Path) -> CampaignSpec:
    """Inline JSON (starts with ``{``), or a ``.json`` / ``.toml`` file."""
    text = str(spec).strip()
    try:
        if text.startswith("{"):
            data = json.loads(text, parse_constant=_no_constant)
        else:
            path = Path(text)
            if not path.is_file():
                raise ConfigError(f"campaign spec {text!r} is neither inline JSON nor an existing file")
            if path.suffix.lower() == ".toml":
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            elif path.suffix.lower() == ".json":
                data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
            else:
                raise ConfigError(f"campaign spec {path} must be a .json or .toml file")
        return CampaignSpec.model_validate(data)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        if isinstance(err, ValidationError):
            raise ConfigError(f"invalid campaign spec: {_fields(err)}") from None
        raise ConfigError(f"campaign spec is not valid JSON/TOML: {err}") from None


def score_audience(model: str | Path | ExportedModel, users: str | Path, campaign: CampaignSpec, out: str | Path,
                   *, chunk_rows: int = DEFAULT_CHUNK_ROWS, threads: int = 2,
                   on_chunk: Callable[[int], None] | None = None) -> AudienceReport:
    """Score every row of ``users`` for ``campaign``; write ``out`` (Parquet) atomically."""
    started = time.perf_counter()
    exported = model if isinstance(model, ExportedModel) else load_exported(model, threads=threads)
    dataset = _users_dataset(Path(users))
    columns = [name for name in USER_FIELDS if name in dataset.schema.names]
    schema = pa.schema([dataset.schema.field(contract.USER_ID)] + [
        pa.field(contract.prediction_column(t), pa.float32()) for t in exported.tasks])
    rows, now = 0, datetime.now(timezone.utc)  # one time for every chunk (hour and weekday are features)
    with atomic_output(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        batches = dataset.to_batches(columns=columns, batch_size=chunk_rows, batch_readahead=1,
                                     fragment_readahead=1)
        for batch in batches:
            probabilities = _score_chunk(exported, pa.Table.from_batches([batch]), campaign, now)
            writer.write_batch(pa.record_batch(
                [batch.column(contract.USER_ID), *(pa.array(probabilities[:, j]) for j in range(probabilities.shape[1]))],
                schema=schema))
            rows += batch.num_rows
            if on_chunk is not None:
                on_chunk(rows)
    return AudienceReport(Path(out), rows, exported.tasks, time.perf_counter() - started)


def _score_chunk(model: ExportedModel, users: pa.Table, campaign: CampaignSpec, now: datetime) -> np.ndarray:
    """(rows, T) probabilities of one chunk: its users with the campaign's fields on every row."""
    n = users.num_rows
    table = users
    for name, column in (constant_columns(campaign, CANDIDATE_FIELDS, n) | context_columns(campaign, n, now)).items():
        table = table.append_column(name, column)
    return model.score(table)


def _users_dataset(path: Path) -> ds.Dataset:
    if not path.exists():
        raise UnitargetError(f"users table not found: {path}")
    try:
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
    except (pa.ArrowException, OSError) as err:
        raise UnitargetError(f"{path} is not a Parquet file or a directory of them: {err}") from None
    if contract.USER_ID not in dataset.schema.names:
        raise UnitargetError(f"users table {path} has no {contract.USER_ID!r} column "
                             f"(columns: {', '.join(dataset.schema.names)})")
    return dataset


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")


def _fields(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in err.errors())
