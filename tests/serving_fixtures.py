"""One tiny trained model exported once per test session, shared by the serving tests.

Training takes seconds but the ONNX export about ten, so the export is cached here (a module
global) rather than in a fixture each test module would re-run. The export goes through the CLI,
which therefore gets tested on the way. ``models/`` holds ``v1`` and a copy ``v2`` (same weights,
another version name) for reload tests; tests that damage files work on their own copies.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from unitarget.cli import app as cli
from unitarget.config import Config, merge
from unitarget.pipeline import train

#: The conftest's ``fast_config``, as a value (that fixture is function-scoped).
FAST = {
    "model": {"hidden": [32, 16], "tower_hidden": [8], "embedding_dim": 8},
    "train": {"batch_size": 512, "max_epochs": 2, "patience": 2, "valid_days": 4, "threads": 1},
    "optim": {"warmup_steps": 5},
}

_CACHE: dict[str, Path] = {}


@dataclass(frozen=True)
class Exported:
    run: Path  # the trained run directory
    models: Path  # the models directory: v1, v2
    export_output: str  # what `unitarget export` printed

    @property
    def v1(self) -> Path:
        return self.models / "v1"


def exported_model(root: Path, log: Path) -> Exported:
    """Train (fast config) and export through the CLI, once per session."""
    if "root" not in _CACHE:
        train(log, root / "run", merge(Config(), FAST))
        result = CliRunner().invoke(cli, ["export", "--model", str(root / "run"), "--out", str(root / "models" / "v1")])
        assert result.exit_code == 0, result.output
        shutil.copytree(root / "models" / "v1", root / "models" / "v2")
        (root / "export_output.txt").write_text(result.output)
        _CACHE["root"] = root
    root = _CACHE["root"]
    return Exported(root / "run", root / "models", (root / "export_output.txt").read_text())


def models_copy(exported: Exported, root: Path, versions: tuple[str, ...] = ("v1", "v2")) -> Path:
    """A models directory of its own (copies of ``versions``): its version pointer is this test's alone."""
    models = root / "models"
    for version in versions:
        shutil.copytree(exported.models / version, models / version)
    return models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server in a thread on a free loopback port (stopped by ``stop``)."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
