"""Model versions inside one models directory: the version serving, the one before it, and switches.

A version is a subdirectory of the configured models directory holding an export. Only names are
accepted, never paths or URLs: a name with a separator, ``..`` or a symlink that leads outside the
directory is refused, so a reload request cannot make the server read arbitrary files.

Switching is one reference assignment. A request takes the current model once and keeps using it
to the end, so requests in flight during a reload finish on the version they started with and none
is dropped. A version is loaded and fully checked (files, parity, warm-up) before it replaces the
current one; if anything fails, the current version keeps serving.

Several worker processes share one models directory and its version pointer (``pointer.py``). A
reload or rollback runs in the worker that received it, under the directory's writer lock (one at a
time across workers): load and check, move the pointer, switch. The other workers ``follow`` the
pointer: a swap when it names their previous version, else a load with the same checks; a worker
that cannot load it keeps its version and reports the failure (``follow_error``) until the pointer
moves again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unitarget.errors import UnitargetError
from unitarget.serving import heap, pointer as vp
from unitarget.serving.runtime import ExportedModel, load_exported

logger = logging.getLogger("unitarget.serving")

_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class VersionNotFound(UnitargetError):
    """No such version in the models directory (or the name is not a plain directory name)."""


class RegistryBusy(UnitargetError):
    """Another reload is running, or there is nothing to roll back to."""


class NotReady(UnitargetError):
    """No model has been loaded (yet): the first load is running or failed."""


class ModelRegistry:
    """The model versions of one models directory as one worker sees them: the one serving, the previous (for
    rollback), the pointer generation it has applied and the last load or follow error. A lock lets one switch run
    at a time in the process, the directory's lock one at a time across processes; the switch is one assignment."""

    def __init__(self, models_dir: str | Path, *, threads: int = 1, check_parity: bool = True) -> None:
        self.models_dir = Path(models_dir).resolve()
        self.threads = threads
        self.check_parity = check_parity
        self.current: ExportedModel | None = None
        self.previous: ExportedModel | None = None
        self.last_error: str | None = None
        self.generation: int | None = None  # the pointer generation this worker serves (or failed to follow)
        self.pointed: str | None = None  # the version the pointer named when last read
        self.follow_error: str | None = None
        self.load_seconds = 0.0  # how long the last load and its checks took here
        self._switching = threading.Lock()

    def require(self) -> ExportedModel:
        """The model serving now, for one request to use to its end."""
        model = self.current
        if model is None:
            raise NotReady("no model is loaded" + (f": {self.last_error}" if self.last_error else " yet"))
        return model

    @property
    def in_sync(self) -> bool:
        """Whether this worker serves the version the pointer names (False while it has not followed a move)."""
        return self.current is not None and self.current.version == self.pointed

    def path_of(self, version: str) -> Path:
        """The directory of ``version``, which must be a plain name of a directory inside models_dir."""
        if not _VERSION_NAME.fullmatch(version):
            raise VersionNotFound(f"{version!r} is not a version name (letters, digits, '.', '_', '-'; "
                                  f"a directory inside the models directory, not a path)")
        path = (self.models_dir / version).resolve()
        if path.parent != self.models_dir or not path.is_dir():
            raise VersionNotFound(f"no model version {version!r} in the models directory")
        return path

    def start(self, version: str) -> ExportedModel:
        """Serve the pointed version at start, or ``version`` where no pointer exists yet (which then becomes the
        pointer's first generation, unless another worker wrote one meanwhile: that one is followed next)."""
        found = vp.read_pointer(self.models_dir)
        with self._switching:
            model = self._switch_to(self._load(found.version if found else version))
            if found is not None:
                self.generation, self.pointed = found.generation, found.version
                return model
            try:
                with vp.exclusive(self.models_dir, wait=True):
                    if vp.read_pointer(self.models_dir) is None:
                        written = vp.write_pointer(self.models_dir, model.version, 1)
                        self.generation, self.pointed = written.generation, written.version
            except UnitargetError as err:  # a read-only models directory: serve, but reloads will say why they fail
                logger.warning("serving %s without a version pointer: %s", model.version, err)
            return model

    def load(self, version: str) -> ExportedModel:
        """Load and check ``version``, point every worker at it, switch; the version it replaces becomes ``previous``."""
        with self._writer() as head:
            model = self._load(version)
            self._move_pointer(model.version, head)
            return self._switch_to(model)

    def rollback(self) -> ExportedModel:
        """Switch back to the previous version (again: forward to the one rolled back from), in every worker."""
        with self._writer() as head:
            if self.previous is None:
                raise RegistryBusy("there is no previous version to roll back to")
            self._move_pointer(self.previous.version, head)
            self.previous, self.current = self.current, self.previous
            return self.current

    def follow(self) -> str | None:
        """Catch up with the pointer if another worker moved it; returns what happened ("switched", "failed", "busy":
        a switch is running here, call again), None when there was nothing to do."""
        if not self._switching.acquire(blocking=False):
            return "busy"
        try:
            try:
                head = vp.read_pointer(self.models_dir)
            except UnitargetError as err:
                return self._failed(None, str(err))
            if head is None or head.generation == self.generation:
                return None
            self.pointed = head.version
            if self.current is not None and head.version == self.current.version:
                self.generation, self.follow_error = head.generation, None
                return None
            if self.previous is not None and head.version == self.previous.version:
                self.previous, self.current = self.current, self.previous
            else:
                try:
                    self._switch_to(self._load(head.version))
                except UnitargetError as err:
                    return self._failed(head, str(err))
            self.generation, self.follow_error = head.generation, None
            return "switched"
        finally:
            self._switching.release()

    def _failed(self, head: vp.Pointer | None, error: str) -> str:
        """Keep serving and remember why (a failed generation is not retried until the pointer moves again)."""
        self.follow_error = error
        if head is not None:
            self.generation = head.generation
        return "failed"

    @contextmanager
    def _writer(self) -> Iterator[vp.Pointer | None]:
        """Hold this process's switch lock and the directory's writer lock (neither waits: a second reload gets a
        409) and yield the pointer as it stands."""
        if not self._switching.acquire(blocking=False):
            raise RegistryBusy("another reload or rollback is in progress; try again when it has finished")
        try:
            with vp.exclusive(self.models_dir, wait=False) as held:
                if not held:
                    raise RegistryBusy("another worker is reloading or rolling back; try again when it has finished")
                yield vp.read_pointer(self.models_dir)
        finally:
            self._switching.release()

    def _load(self, version: str) -> ExportedModel:
        started = time.perf_counter()
        try:
            model = load_exported(self.path_of(version), threads=self.threads, check_parity=self.check_parity)
        except UnitargetError as err:
            self.last_error = str(err)
            raise
        self.last_error = None
        self.load_seconds = time.perf_counter() - started
        return model

    def _move_pointer(self, version: str, head: vp.Pointer | None) -> None:
        written = vp.write_pointer(self.models_dir, version, (head.generation if head else 0) + 1)
        self.generation, self.pointed, self.follow_error = written.generation, written.version, None

    def _switch_to(self, model: ExportedModel) -> ExportedModel:
        self.previous, self.current = self.current, model
        heap.settle()
        return model
