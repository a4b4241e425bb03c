"""Model versions inside one models directory: the version serving, the one before it, and switches.

A version is a subdirectory of the configured models directory holding an export. Only names are
accepted, never paths or URLs: a name with a separator, ``..`` or a symlink that leads outside the
directory is refused, so a reload request cannot make the server read arbitrary files.

Switching is one reference assignment. A request takes the current model once and keeps using it
to the end, so requests in flight during a reload finish on the version they started with and none
is dropped. A version is loaded and fully checked (files, parity, warm-up) before it replaces the
current one; if anything fails, the current version keeps serving. The replaced version is kept
for ``rollback``. One reload at a time.
"""

from __future__ import annotations

import gc
import re
import threading
from pathlib import Path

from unitarget.errors import UnitargetError
from unitarget.serving.runtime import ExportedModel, load_exported

_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class VersionNotFound(UnitargetError):
    """No such version in the models directory (or the name is not a plain directory name)."""


class RegistryBusy(UnitargetError):
    """Another reload is running, or there is nothing to roll back to."""


class NotReady(UnitargetError):
    """No model has been loaded (yet): the first load is running or failed."""


class ModelRegistry:
    """The model versions of one models directory: the one serving, the previous (for rollback) and the last load error;
    a lock lets one reload or rollback run at a time, and the switch is one assignment."""

    def __init__(self, models_dir: str | Path, *, threads: int = 1, check_parity: bool = True) -> None:
        self.models_dir = Path(models_dir).resolve()
        self.threads = threads
        self.check_parity = check_parity
        self.current: ExportedModel | None = None
        self.previous: ExportedModel | None = None
        self.last_error: str | None = None
        self._switching = threading.Lock()

    def require(self) -> ExportedModel:
        """The model serving now, for one request to use to its end."""
        model = self.current
        if model is None:
            raise NotReady("no model is loaded" + (f": {self.last_error}" if self.last_error else " yet"))
        return model

    def path_of(self, version: str) -> Path:
        """The directory of ``version``, which must be a plain name of a directory inside models_dir."""
        if not _VERSION_NAME.fullmatch(version):
            raise VersionNotFound(f"{version!r} is not a version name (letters, digits, '.', '_', '-'; "
                                  f"a directory inside the models directory, not a path)")
        path = (self.models_dir / version).resolve()
        if path.parent != self.models_dir or not path.is_dir():
            raise VersionNotFound(f"no model version {version!r} in the models directory")
        return path

    def load(self, version: str) -> ExportedModel:
        """Load, check and switch to ``version``; the version it replaces becomes ``previous``."""
        if not self._switching.acquire(blocking=False):
            raise RegistryBusy("another reload or rollback is in progress; try again when it has finished")
        try:
            try:
                model = load_exported(self.path_of(version), threads=self.threads, check_parity=self.check_parity)
            except UnitargetError as err:
                self.last_error = str(err)
                raise
            self.previous, self.current = self.current, model
            self.last_error = None
            _freeze_heap()
            return model
        finally:
            self._switching.release()

    def rollback(self) -> ExportedModel:
        """Switch back to the previous version (again: forward to the one rolled back from)."""
        if not self._switching.acquire(blocking=False):
            raise RegistryBusy("a reload is in progress; try again when it has finished")
        try:
            if self.previous is None:
                raise RegistryBusy("there is no previous version to roll back to")
            self.previous, self.current = self.current, self.previous
            return self.current
        finally:
            self._switching.release()


def _freeze_heap() -> None:
    """Move every object alive now (the models, their vocabularies, the libraries) out of the
    garbage collector's view. A full collection otherwise walks all of them: about 80 ms, every
    few hundred requests, which was the service's p99 latency (docs/benchmarks.md). Objects
    are still freed by reference counting when a version is dropped."""
    gc.collect()
    gc.freeze()
