"""The run directory: its files, how a run is staged, published, read back and recognised.

A run directory holds everything serving needs and nothing that can execute code on load:

    config.json    the validated configuration the model was trained with
    encoder.json   fitted vocabularies, bag lengths, numeric statistics, tier map
    model.pt       best-validation weights (a tensor dict, read with weights_only=True)
    training.json  the training record: one history row per validation, data range, features, timings

Training writes into ``.<run>.partial/`` beside the target (``Staging``) and moves it into place
only when it has finished and its record is complete, so a crash, a bad input or Ctrl-C never
replaces a good run and no published run is ever rewritten. ``resume`` continues from the staging
directory's last checkpoint when the fingerprint of the interrupted run matches.

One fingerprint identifies a training: the *training part* of the configuration (everything but
``simulate``, ``evaluation.test_days``, ``train.threads``, how often ``train`` checkpoints and
``train.ddp_timeout_minutes``, which do not change the weights)
and the fit / validation rows (count and time range). ``--resume`` and run reuse (``ablate``,
``reproduce --full``) both compare it, and it is recomputed from a run's own ``config.json`` and
``training.json``, so runs written before it existed are recognised too; a run whose stored configuration lacks a
setting of the training part (it predates that setting) is not reused, since nothing says it trained as today's
default would.

Run format 2 (this version) adds ``run_format`` to ``training.json``; runs of format 1 (no such
key) have the same files and load unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from unitarget.config import Config, config_from_mapping
from unitarget.data.features import FeatureEncoder
from unitarget.data.split import time_range
from unitarget.errors import UnitargetError
from unitarget.io import atomic_write_json, publish_directory, remove_temporary_files
from unitarget.training import checkpoint

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.json"
WEIGHTS_FILE = "model.pt"
TRAINING_FILE = "training.json"
CHECKPOINT_FILE = "checkpoint.pt"
FINGERPRINT_FILE = "fingerprint.json"
RUN_FORMAT = 2
#: The files every published run has.
RUN_FILES = (CONFIG_FILE, ENCODER_FILE, WEIGHTS_FILE, TRAINING_FILE)


@dataclass(frozen=True)
class DataSpan:
    """Which rows a model was fitted and validated on: counts and time ranges (ISO strings)."""

    train_rows: int
    valid_rows: int
    train_range: tuple[str, str]
    valid_range: tuple[str, str]

    @classmethod
    def of(cls, fit_rows: pa.Table, valid_rows: pa.Table) -> "DataSpan":
        """The span of a fit / validation split."""
        return cls(fit_rows.num_rows, valid_rows.num_rows, time_range(fit_rows), time_range(valid_rows))

    def same_days(self, other: "DataSpan") -> bool:
        """Whether ``other`` was fitted and validated on the same days (time ranges; the row counts may differ with
        the sources the tasks learn from)."""
        return (self.train_range, self.valid_range) == (other.train_range, other.valid_range)


@dataclass(frozen=True)
class TrainingRecord:
    """What ``training.json`` holds; written once, when the run is published."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_valid_score: float
    span: DataSpan
    features_used: list[str]
    features_skipped: list[str]
    tier_source: str
    parameters: int
    seconds: float
    #: fine-tuning only: each old head's validation AP on the new log, before and after
    old_heads_valid_ap: dict[str, dict[str, float]] | None = None
    #: the validation window: days used, days configured, the log's span, and the short-log note
    #: when the rule replaced the configured window (``data.split``); absent in older runs
    valid_window: dict[str, Any] | None = None
    #: the run's optimiser steps at the best validation (``train.validate_every`` validates inside epochs); absent in
    #: older runs, whose history rows have no ``step`` either
    best_step: int | None = None
    #: with ``train.refit``: how the published model was trained again on every row after selection (epochs and
    #: optimiser steps, rows, seconds); the history and ``best_valid_score`` are the selected model's
    refit: dict[str, Any] | None = None
    run_format: int = field(default=RUN_FORMAT)

    def to_dict(self) -> dict[str, Any]:
        """``training.json``'s keys (the span as ``rows``, ``train_range``, ``valid_range``, as in
        run format 1, so readers of older runs read these too)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "span"}
        for optional in ("old_heads_valid_ap", "valid_window", "best_step", "refit"):
            if out[optional] is None:
                del out[optional]
        span = self.span
        return out | {"rows": {"train": span.train_rows, "valid": span.valid_rows},
                      "train_range": list(span.train_range), "valid_range": list(span.valid_range)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingRecord":
        """Read ``training.json`` of format 2 or 1 (-inf scores were written as null)."""
        span = DataSpan(int(data["rows"]["train"]), int(data["rows"]["valid"]), tuple(data["train_range"]),
                        tuple(data["valid_range"]))
        known = {f.name for f in fields(cls)} - {"span"}
        kept = {k: v for k, v in data.items() if k in known}
        kept.setdefault("run_format", 1)
        kept["best_valid_score"] = float("-inf") if kept["best_valid_score"] is None else kept["best_valid_score"]
        return cls(span=span, **kept)


def epochs_trained(history: list[dict[str, Any]]) -> int:
    """The epochs a training's ``history`` (one row per validation) covers, the last one begun counted."""
    return history[-1]["epoch"] + 1 if history else 0


def best_validation(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of the best validation, whose weights the run published: the last that improved ({} for none)."""
    return next((row for row in reversed(history) if row.get("improved")), {})


#: ``train`` settings that do not change the weights: the thread count, how often a checkpoint is written (a
#: resumed run reaches the same weights wherever it was checkpointed) and the data-parallel timeout, so ``--resume``
#: may change them.
_NOT_TRAINING = ("threads", "checkpoint_every_steps", "checkpoint_every_minutes", "ddp_timeout_minutes")


def training_part(config: Config | dict[str, Any]) -> dict[str, Any]:
    """The configuration that decides the weights: all of it but the simulation, the test split
    (``evaluation.test_days``, which ``train`` never reads), the thread count, the checkpoint
    frequency and the data-parallel timeout (so a run's fingerprint is what it was before those options existed).
    ``config`` may be a run's stored ``config.json`` mapping (``run_fingerprint``)."""
    part = copy.deepcopy(config) if isinstance(config, dict) else config.to_json_dict()
    part.pop("stream", None)  # how a log on disk is read: the streamed run's fingerprint names it (``streamed``)
    part.pop("simulate", None)
    part["evaluation"].pop("test_days", None)
    for key in _NOT_TRAINING:
        part["train"].pop(key, None)
    return part


def fingerprint(config: Config | dict[str, Any], span: DataSpan, streamed: dict[str, Any] | None = None) -> str:
    """sha256 of the training part of ``config`` and the rows it is fitted and validated on; for a run trained from
    the encoded cache, ``streamed`` adds what decides its batches (the cache's key and the shuffle window)."""
    payload: dict[str, Any] = {"config": training_part(config), "data": asdict(span)}
    if streamed is not None:
        payload["streamed"] = streamed
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Run:
    """A published run read back: its configuration, fitted encoder, weights and record."""

    path: Path
    config: Config
    encoder: FeatureEncoder
    weights: dict[str, torch.Tensor]
    record: TrainingRecord | None  # None for a directory saved without one (tests, hand-made runs)


def read_run(path: str | Path) -> Run:
    """Read a run directory, naming the file that is missing or damaged."""
    path = Path(path)
    for name in (CONFIG_FILE, ENCODER_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise UnitargetError(f"{path} is not a trained unitarget run: {name} is missing")
    config = config_from_mapping(_read_json(path / CONFIG_FILE), str(path / CONFIG_FILE))
    try:
        encoder = FeatureEncoder.from_dict(_read_json(path / ENCODER_FILE))
    except (KeyError, TypeError, ValueError) as err:
        raise UnitargetError(f"{path / ENCODER_FILE} is not a fitted unitarget encoder: {err}") from None
    weights = checkpoint.load(path / WEIGHTS_FILE)
    if "model" not in weights:
        raise UnitargetError(f"{path / WEIGHTS_FILE} does not match {CONFIG_FILE}: it holds no model weights")
    record = None
    if (path / TRAINING_FILE).is_file():
        try:
            record = TrainingRecord.from_dict(_read_json(path / TRAINING_FILE))
        except (KeyError, TypeError, ValueError) as err:
            raise UnitargetError(f"{path / TRAINING_FILE} is not a unitarget training record: {err}") from None
    return Run(path, config, encoder, weights["model"], record)


def run_fingerprint(path: str | Path) -> str | None:
    """The fingerprint of the finished run at ``path``; None if there is none or it is unreadable."""
    path = Path(path)
    if not all((path / name).is_file() for name in RUN_FILES):
        return None
    try:
        stored = _read_json(path / CONFIG_FILE)
        config_from_mapping(stored, str(path / CONFIG_FILE))  # a configuration this version can read
        record = TrainingRecord.from_dict(_read_json(path / TRAINING_FILE))
    except (UnitargetError, KeyError, TypeError, ValueError):
        return None
    # The stored mapping, not the configuration parsed from it: parsing would fill a setting added since the run was
    # trained with today's default, which may not be what trained it (a new component on by default), and the run
    # would pass for one trained under today's defaults. A run that predates a setting of the training part is
    # therefore never reused; settings outside it (threads, checkpoint frequency, timeout) do not count.
    return fingerprint(stored, record.span)


def save_run(path: str | Path, config: Config, encoder: FeatureEncoder, weights: dict[str, torch.Tensor],
             record: TrainingRecord | None = None) -> None:
    """Write a run's files into ``path`` (a staging directory, or a test's run)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / CONFIG_FILE, config.to_json_dict())
    atomic_write_json(path / ENCODER_FILE, encoder.to_dict())
    checkpoint.save({"model": weights}, path / WEIGHTS_FILE)
    if record is not None:
        atomic_write_json(path / TRAINING_FILE, record.to_dict())


class Staging:
    """``.<run>.partial/``: where a run trains (a ``training.loop.TrainingStore`` on disk)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out.parent / f".{self.out.name}.partial"

    def start(self, run_fingerprint: str, *, resume: bool) -> "Staging":
        """A fresh staging directory, or (``resume``) the interrupted one if it trained the same, less the temporary
        file of a write that a kill cut short (so it is never published)."""
        if resume:
            if not (self.path / CHECKPOINT_FILE).is_file():
                raise UnitargetError(f"nothing to resume: no interrupted run in {self.path}")
            saved = _read_json(self.path / FINGERPRINT_FILE) if (self.path / FINGERPRINT_FILE).is_file() else {}
            if saved.get("fingerprint") != run_fingerprint:
                raise UnitargetError(
                    f"cannot resume from {self.path}: the data or configuration differ from the interrupted run"
                )
            remove_temporary_files(self.path)  # a write the kill interrupted; its target is intact
            return self
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        atomic_write_json(self.path / FINGERPRINT_FILE, {"fingerprint": run_fingerprint})
        return self

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        """Write the best weights so far as the run's ``model.pt`` (atomically)."""
        checkpoint.save({"model": weights}, self.path / WEIGHTS_FILE)

    def load_best(self) -> dict[str, torch.Tensor]:
        """The best weights written so far."""
        return checkpoint.load(self.path / WEIGHTS_FILE)["model"]

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """Write the resumable state (atomically: a crash keeps the previous one)."""
        checkpoint.save(payload, self.path / CHECKPOINT_FILE)

    def load_checkpoint(self) -> dict[str, Any]:
        """The last resumable state written."""
        return checkpoint.load(self.path / CHECKPOINT_FILE)

    def publish(self, config: Config, encoder: FeatureEncoder, record: TrainingRecord) -> Path:
        """Complete the run (the best weights are already here) and move it to ``out``."""
        atomic_write_json(self.path / CONFIG_FILE, config.to_json_dict())
        atomic_write_json(self.path / ENCODER_FILE, encoder.to_dict())
        atomic_write_json(self.path / TRAINING_FILE, record.to_dict())
        (self.path / CHECKPOINT_FILE).unlink(missing_ok=True)
        (self.path / FINGERPRINT_FILE).unlink(missing_ok=True)
        publish_directory(self.path, self.out)
        return self.out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UnitargetError(f"{path} cannot be read as JSON: {err}") from None
