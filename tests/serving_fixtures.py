"""One tiny trained model exported once per test session, shared by the serving tests.

Training takes seconds but the ONNX export about ten, so the export is cached here (a module
global) rather than in a fixture each test module would re-run. The export goes through the CLI,
which therefore gets tested on the way. ``models/`` holds ``v1`` and a copy ``v2`` (same weights,
another version name) for reload tests; tests that damage files work on their own copies. Also
here: a valid scoring body, the bad bodies every kind of refusal is tested with, and the fuzz that
mutates a body (tests/test_service.py and tests/test_serving_validation.py both use them).
"""

from __future__ import annotations

import random
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
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

#: Junk values the fuzzers put in place of a body's values.
JUNK = [None, 0, -1, 1.5, 10**20, "", "x" * 600, [], {}, [1], {"a": 1}, True, "\u00e9\U0001f600", float("nan")]

#: Bad scoring bodies: (text, status, a ``loc`` the answer must name or None).
BAD_BODIES = {
    "malformed JSON": ('{"user": {"user_id": "u"', 400, None),
    "not JSON at all": ("hello", 400, None),
    "deeply nested": ("[" * 20_000 + "]" * 20_000, 400, None),
    "missing user": ('{"candidates": [{"show_id": "s"}]}', 422, ["body", "user"]),
    "missing show_id": ('{"user": {"user_id": "u"}, "candidates": [{}]}', 422, ["body", "candidates", 0, "show_id"]),
    "no candidates": ('{"user": {"user_id": "u"}, "candidates": []}', 422, ["body", "candidates"]),
    "id as a number": ('{"user": {"user_id": 7}, "candidates": [{"show_id": "s"}]}', 422, ["body", "user", "user_id"]),
    "count as a string": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "show_streams_30d": "9"}]}',
                          422, ["body", "candidates", 0, "show_streams_30d"]),
    "negative count": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "show_age_days": -1}]}',
                       422, ["body", "candidates", 0, "show_age_days"]),
    "NaN price": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": NaN}]}',
                  422, ["body", "candidates", 0, "price"]),
    "Infinity price": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": Infinity}]}',
                       422, ["body", "candidates", 0, "price"]),
    "1e309 price": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": 1e309}]}',
                    422, ["body", "candidates", 0, "price"]),
    "NaN id": ('{"user": {"user_id": NaN}, "candidates": [{"show_id": "s"}]}', 422, ["body", "user", "user_id"]),
    "huge integer": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "show_streams_30d": 1' + "0" * 40
                     + '}]}', 422, ["body", "candidates", 0, "show_streams_30d"]),
    "unknown key": ('{"user": {"user_id": "u", "age": 3}, "candidates": [{"show_id": "s"}]}',
                    422, ["body", "user", "age"]),
    "lone surrogate": ('{"user": {"user_id": "\\ud800"}, "candidates": [{"show_id": "s"}]}',
                       422, ["body", "user", "user_id"]),
    "bad time": ('{"user": {"user_id": "u"}, "context": {"ts": "yesterday"}, "candidates": [{"show_id": "s"}]}',
                 422, ["body", "context", "ts"]),
    "list for an object": ('{"user": [], "candidates": [{"show_id": "s"}]}', 422, ["body", "user"]),
    "unknown extra feature": ('{"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}, {"show_id": "s", '
                              '"features": {"show_vec": [1.0, 2.0]}}]}', 422, ["body", "candidates", 1, "features", "show_vec"]),
    "object as a feature value": ('{"user": {"user_id": "u", "features": {"f": {}}}, "candidates": [{"show_id": "s"}]}',
                                  422, None),
}


def valid_body(log: pa.Table) -> dict:
    """A valid scoring request: the first user of the log and three known candidates."""
    row = log.slice(0, 1).to_pylist()[0]
    user = {k: row[k] for k in ("user_id", "user_country", "user_age_bucket", "user_history_shows",
                                "user_followed_shows")}
    candidates = [{k: r[k] for k in ("show_id", "episode_id", "show_genre", "show_topics", "show_publisher",
                                     "show_streams_30d", "show_age_days", "format", "campaign_id", "creative_id",
                                     "slot", "layout")} | {"id": f"c{i}", "price": 1.0 + i}
                  for i, r in enumerate(log.slice(0, 3).to_pylist())]
    return {"user": user, "context": {"ts": "2026-01-20T08:30:00Z", "surface": row["surface"],
                                      "device": row["device"]}, "candidates": candidates}


def mutated(value, rng: random.Random):
    """``value`` with, somewhere inside, a key dropped or added or a value swapped for junk (a small fuzz)."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        value = dict(value)
        key = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.3:
            del value[key]
        elif choice < 0.5:
            value[rng.choice(["zz", key + "_", "price"])] = rng.choice(JUNK)
        else:
            value[key] = mutated(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        value = list(value)
        value[rng.randrange(len(value))] = mutated(value[rng.randrange(len(value))], rng)
        return value
    return rng.choice(JUNK)


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
