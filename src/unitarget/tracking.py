"""Experiment tracking: what a command logs about its runs, through one interface, to nowhere or to MLflow.

A run logs its configuration as parameters (flattened to dotted keys: ``optim.lr``), every validation as metrics
at its optimiser step (``TrackedRun.hooks``, a ``training.loop.TrainingHooks``), its final metrics, and its report
files as artifacts. Runs nest: ``ablate`` logs one parent run and a child per (setup, seed), ``tune`` one parent
per study and a child per trial.

Nothing else in unitarget imports mlflow: the CLI picks a tracker with ``make_tracker`` and the library calls log
through ``TrackedRun``, whose default, ``NO_RUN``, does nothing. MLflow is the optional ``track`` extra; asking
for it without the extra installed is one error naming the extra.

The default store needs no server: a SQLite file, ``sqlite:///DIR/mlflow.db``, with the artifacts in
``DIR/mlartifacts`` beside it. (MLflow 3 refuses its old file store, ``./mlruns``, unless
``MLFLOW_ALLOW_FILE_STORE`` is set: it is in maintenance mode.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from unitarget.errors import UnitargetError
from unitarget.runs import TrainingRecord
from unitarget.training.hooks import SilentHooks, TrainingHooks

#: ``--track`` values.
TRACKERS = ("mlflow",)
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
_EXTRA = "the 'track' extra: pip install 'unitarget[track]'"
_MLFLOW_BATCH = 100  # MLflow's limit on parameters per logging call (metrics: 1,000)

Exceptions = tuple[type[BaseException], ...]


class TrackedRun(Protocol):
    """One tracked run, open while its ``run`` or ``child`` context lasts."""

    #: the store's id of the run ("" for ``NO_RUN``)
    id: str

    @property
    def hooks(self) -> TrainingHooks:
        """Training hooks that log each validation record's numbers at the record's ``step``."""
        ...

    def child(self, name: str, params: Mapping[str, Any], *,
              finished_on: Exceptions = ()) -> AbstractContextManager["TrackedRun"]:
        """A run nested under this one (``Tracker.run`` with this run as the parent)."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Numbers at ``step`` (NaN and infinities are kept as the store keeps them)."""
        ...

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Copy these files into the run; missing ones are skipped (a report a study did not write)."""
        ...

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Labels that are not parameters: a trial's state, the run a study reused."""
        ...


class Tracker(Protocol):
    """Opens runs in one store and experiment."""

    def run(self, name: str, params: Mapping[str, Any], *, parent: str | None = None, resume: str | None = None,
            finished_on: Exceptions = ()) -> AbstractContextManager[TrackedRun]:
        """A run named ``name`` with ``params`` (a nested mapping, flattened), under run id ``parent`` if given, or
        the existing run ``resume`` reopened if the store has it. It ends FINISHED when the context exits normally or
        by one of ``finished_on`` (a pruned trial is a normal outcome), KILLED on Ctrl-C, else FAILED."""
        ...


class NoRun:
    """The run of ``NoTracker``: logs nothing, nests nothing."""

    id = ""
    hooks: TrainingHooks = SilentHooks()

    @contextmanager
    def child(self, name: str, params: Mapping[str, Any], *, finished_on: Exceptions = ()) -> Iterator["NoRun"]:
        """Itself."""
        yield self

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Nothing."""

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Nothing."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Nothing."""


NO_RUN = NoRun()


class NoTracker:
    """The tracker without ``--track``: every run is ``NO_RUN``."""

    @contextmanager
    def run(self, name: str, params: Mapping[str, Any], *, parent: str | None = None, resume: str | None = None,
            finished_on: Exceptions = ()) -> Iterator[NoRun]:
        """``NO_RUN``."""
        yield NO_RUN


NO_TRACKER = NoTracker()


def make_tracker(kind: str | None, uri: str | None, store_dir: Path, experiment: str) -> Tracker:
    """The tracker ``--track KIND [--track-uri URI]`` asks for: none, or MLflow at ``uri`` (default: the SQLite
    store in ``store_dir``, created if needed) in experiment ``experiment``."""
    if kind is None:
        if uri is not None:
            raise UnitargetError("--track-uri needs --track mlflow")
        return NO_TRACKER
    if kind not in TRACKERS:
        raise UnitargetError(f"unknown tracker {kind!r}; choose one of: {', '.join(TRACKERS)}")
    if uri is None:
        store_dir.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store_dir.resolve() / STORE_FILE}"
    return MlflowTracker(uri, experiment)


def flat_params(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr": 0.002}}`` -> ``{"optim.lr": "0.002"}``: nested mappings become dotted keys, lists and
    other values their JSON text (an empty mapping ``{}``), as MLflow's parameters are strings."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


#: What ``report_files`` picks: reports, tables, charts, records.
REPORT_SUFFIXES = (".md", ".csv", ".png", ".json", ".toml")


def report_files(directory: Path) -> list[Path]:
    """The report files a study wrote at the top of ``directory`` (not its runs), to log as artifacts."""
    return sorted(p for p in Path(directory).glob("*") if p.is_file() and p.suffix in REPORT_SUFFIXES)


def record_metrics(record: TrainingRecord) -> dict[str, float]:
    """A finished training's final numbers: its best validation score and epoch, epochs run, size and seconds."""
    return {"best_valid_score": record.best_valid_score, "best_epoch": record.best_epoch,
            "epochs": len(record.history), "parameters": record.parameters, "seconds": record.seconds}


def validation_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a validation record (``on_validation``), less its step and the ``improved`` flag."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class MlflowTracker:
    """Runs in an MLflow store, through ``MlflowClient`` (no process-wide active run or tracking URI is set)."""

    def __init__(self, uri: str, experiment: str) -> None:
        try:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UnitargetError(f"--track mlflow needs {_EXTRA}") from None
        self.uri = uri
        try:
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(
                experiment, artifact_location=_artifact_location(uri))
        except MlflowException as err:
            raise UnitargetError(f"cannot use the MLflow store {uri}: {err.message}") from None

    @contextmanager
    def run(self, name: str, params: Mapping[str, Any], *, parent: str | None = None, resume: str | None = None,
            finished_on: Exceptions = ()) -> Iterator["MlflowRun"]:
        """See ``Tracker.run``."""
        run_id = resume if resume is not None and self._exists(resume) else None
        if run_id is None:
            tags = {"mlflow.parentRunId": parent} if parent else None
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            _log_params(self.client, run_id, flat_params(params))
        else:
            self.client.update_run(run_id, status="RUNNING")
        status = "FAILED"
        try:
            yield MlflowRun(self, run_id)
            status = "FINISHED"
        except finished_on:
            status = "FINISHED"
            raise
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.client.set_terminated(run_id, status)

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.experiment_id == self.experiment_id
        except MlflowException:
            return False


class MlflowRun:
    """A run open in an ``MlflowTracker``'s store."""

    def __init__(self, tracker: MlflowTracker, run_id: str) -> None:
        self.tracker, self.id = tracker, run_id
        self.hooks = _TrackingHooks(self)

    def child(self, name: str, params: Mapping[str, Any], *,
              finished_on: Exceptions = ()) -> AbstractContextManager["MlflowRun"]:
        """A run nested under this one."""
        return self.tracker.run(name, params, parent=self.id, finished_on=finished_on)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Every metric at ``step``, in one call."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_metric_key(k), float(v), now, step) for k, v in metrics.items()]
        if batch:
            self.tracker.client.log_batch(self.id, metrics=batch)

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Each existing file, at the artifact root."""
        for path in paths:
            if Path(path).is_file():
                self.tracker.client.log_artifact(self.id, str(path))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Each tag."""
        for key, value in tags.items():
            self.tracker.client.set_tag(self.id, key, value)


class _TrackingHooks(SilentHooks):
    """Logs every validation record's numbers at its step."""

    def __init__(self, run: MlflowRun) -> None:
        self.run = run

    def on_validation(self, record: dict[str, Any]) -> None:
        """The record's numbers (score, per-target APs, loss, speed) at its optimiser step."""
        self.run.log_metrics(validation_metrics(record), step=int(record["step"]))


def _log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(_metric_key(k), v) for k, v in params.items()]
    for start in range(0, len(items), _MLFLOW_BATCH):
        client.log_batch(run_id, params=items[start:start + _MLFLOW_BATCH])


def _metric_key(key: str) -> str:
    """``key`` with what MLflow refuses in a name (anything but letters, digits, ``_-./ :``) replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "_-./ :" else "_" for c in key)


def _artifact_location(uri: str) -> str | None:
    """A SQLite store keeps its experiments' files in ``mlartifacts`` beside the database (MLflow's default is
    relative to the working directory); other stores decide for themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR).resolve().as_uri()
