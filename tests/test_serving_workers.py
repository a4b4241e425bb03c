"""One model version for every worker: the real ``unitarget serve --workers 2`` on a loopback port.

After a reload every answer, from every worker, says the new version within the bound the reload
answered (plus slack for this shared machine); a version that fails its checks leaves every worker
on the old one; a pointed version a worker cannot load leaves it serving its own and saying so; no
request fails during the switches under light traffic; a restart serves the pointed version.
Every loop is bounded in count and time; requests go to 127.0.0.1 on fresh connections, which the
kernel spreads over the two workers' SO_REUSEPORT sockets.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving_fixtures import Exported, exported_model, free_port, models_copy
from unitarget.serving import pointer as vp

BODY = {"user": {"user_id": "u1"}, "context": {"ts": "2026-01-20T08:30:00Z"},
        "candidates": [{"show_id": f"s{j:05d}"} for j in range(20)]}
#: Slack over the bound a reload states, for two workers loading on a shared 2-core machine.
SLACK_S = 30.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


class Workers:
    """``python -m unitarget.cli serve --workers 2`` in a subprocess (stopped by ``stop``)."""

    def __init__(self, model: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "unitarget.cli", "serve", "--model", str(model), "--port", str(self.port),
                   "--workers", "2"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while len(self.views()) < 2:  # both workers answer /v1/model (so both loaded)
            assert self.process.poll() is None and time.time() < deadline, self.process.stderr.read().decode()[-3000:]
            time.sleep(0.2)

    def views(self, tries: int = 60) -> dict[int, dict]:
        """pid -> /v1/model of each worker reached by ``tries`` fresh connections (stops once two are seen)."""
        seen: dict[int, dict] = {}
        for _ in range(tries):
            try:
                answer = httpx.get(f"{self.url}/v1/model", timeout=5)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if answer.status_code == 200:
                seen[answer.json()["worker"]] = answer.json()
            if len(seen) == 2:
                break
        return seen

    def versions_served(self, requests: int = 40) -> set[str]:
        """The x-model-version of ``requests`` scoring answers on fresh connections."""
        return {httpx.post(f"{self.url}/v1/score", json=BODY, timeout=10).headers["x-model-version"]
                for _ in range(requests)}

    def everywhere(self, version: str, within_s: float) -> float:
        """Seconds until both workers serve ``version`` (by /v1/model and by scoring answers); fails past the bound."""
        started = time.perf_counter()
        deadline = started + within_s
        while time.perf_counter() < deadline:
            views = self.views()
            if len(views) == 2 and all(v["current"] == version for v in views.values()) \
                    and self.versions_served() == {version}:
                return time.perf_counter() - started
            time.sleep(0.1)
        raise AssertionError(f"not every worker serves {version} after {within_s} s: {self.views()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Traffic:
    """One thread scoring on fresh connections, at most ``limit`` requests and ``seconds``, noting status and
    version."""

    def __init__(self, url: str, limit: int = 5_000, seconds: float = 240) -> None:
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, limit, time.time() + seconds), daemon=True)
        self._thread.start()

    def _run(self, url: str, limit: int, deadline: float) -> None:
        while not self._stop.is_set() and len(self.answers) < limit and time.time() < deadline:
            try:
                answer = httpx.post(f"{url}/v1/score", json=BODY, timeout=10)
                self.answers.append((answer.status_code, answer.headers.get("x-model-version")))
            except httpx.TransportError as err:
                self.answers.append((0, type(err).__name__))
            time.sleep(0.01)

    def stop(self) -> list[tuple[int, str | None]]:
        self._stop.set()
        self._thread.join(30)
        return self.answers


@pytest.fixture
def models(exported, tmp_path) -> Path:
    models = models_copy(exported, tmp_path)
    shutil.copytree(models / "v1", models / "broken")
    onnx = models / "broken" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    return models


@pytest.fixture
def workers(models) -> Iterator[Workers]:
    server = Workers(models / "v1")
    yield server
    server.stop()


def test_a_reload_reaches_every_worker_and_a_bad_version_none(workers, models):
    assert {v["current"] for v in workers.views().values()} == {"v1"} and workers.versions_served() == {"v1"}
    traffic = Traffic(workers.url)
    try:
        reload = httpx.post(f"{workers.url}/v1/reload", json={"version": "v2"}, timeout=120)
        assert reload.status_code == 200, reload.text
        answer = reload.json()
        assert answer["current"] == answer["pointed"] == "v2" and answer["in_sync"] is True
        bound = answer["others_follow_within_s"]
        assert 0 < bound < 60
        workers.everywhere("v2", bound + SLACK_S)
        assert all(v["in_sync"] and v["pointed"] == "v2" for v in workers.views().values())

        refused = httpx.post(f"{workers.url}/v1/reload", json={"version": "broken"}, timeout=120)
        assert refused.status_code == 422 and "truncated" in refused.json()["detail"]
        assert vp.read_pointer(models).version == "v2"
        time.sleep(2 * 0.5)  # two pointer polls: nothing may move
        assert {v["current"] for v in workers.views().values()} == {"v2"} and workers.versions_served() == {"v2"}

        rollback = httpx.post(f"{workers.url}/v1/rollback", timeout=60)
        assert rollback.status_code == 200 and rollback.json()["current"] == "v1"
        workers.everywhere("v1", rollback.json()["others_follow_within_s"] + SLACK_S)
    finally:
        answers = traffic.stop()
    assert len(answers) > 20 and {status for status, _ in answers} == {200}, answers[-5:]
    assert {version for _, version in answers} <= {"v1", "v2"}


def test_a_worker_that_cannot_load_the_pointed_version_keeps_its_own_and_says_so(workers, models):
    head = vp.read_pointer(models)
    vp.write_pointer(models, "broken", head.generation + 1)  # as if a bad version had been pointed at
    deadline = time.time() + SLACK_S
    while True:
        views = workers.views()
        if len(views) == 2 and all(v["follow_error"] for v in views.values()):
            break
        assert time.time() < deadline, views
        time.sleep(0.2)
    assert all(v["current"] == "v1" and v["pointed"] == "broken" and v["in_sync"] is False for v in views.values())
    assert "truncated" in next(iter(views.values()))["follow_error"]
    assert workers.versions_served() == {"v1"}
    metrics = httpx.get(f"{workers.url}/metrics", timeout=5).text
    assert "unitarget_model_in_sync 0.0" in metrics and "unitarget_follow_failures_total 1.0" in metrics

    assert httpx.post(f"{workers.url}/v1/reload", json={"version": "v1"}, timeout=120).status_code == 200
    deadline = time.time() + SLACK_S
    while not all(v["in_sync"] and v["follow_error"] is None for v in workers.views().values()):
        assert time.time() < deadline, workers.views()
        time.sleep(0.2)


def test_a_restart_serves_the_pointed_version_not_the_model_option(models):
    vp.write_pointer(models, "v2", 7)
    server = Workers(models / "v1")
    try:
        views = server.views()
        assert len(views) == 2 and {v["current"] for v in views.values()} == {"v2"}
        assert all(v["in_sync"] for v in views.values()) and server.versions_served() == {"v2"}
    finally:
        server.stop()
