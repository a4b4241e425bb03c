"""The scoring service over real HTTP: a uvicorn server on a loopback port, every endpoint, every
kind of bad request (never a 500, and the service keeps serving), reloads under traffic, a failed
reload leaving the old version serving, rollback, readiness, overload, a random-body fuzz, and
schemathesis requests generated from the service's own /openapi.json."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import hypothesis
import numpy as np
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.generation import GenerationMode

from typer.testing import CliRunner

from tests.serving_fixtures import (BAD_BODIES, Exported, LiveServer, exported_model, free_port, models_copy, mutated,
                                    valid_body)
from unitarget.cli import app as cli
from unitarget.pipeline import load_model
from unitarget.serving.app import create_app
from unitarget.serving.metrics import Metrics
from unitarget.serving.middleware import Guard
from unitarget.serving.schemas import ScoreRequest
from unitarget.serving.settings import ServiceSettings
from unitarget.serving.tables import request_table

MAX_CANDIDATES = 50
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


@pytest.fixture(scope="module")
def server(exported):
    settings = ServiceSettings.for_model(exported.v1, max_candidates=MAX_CANDIDATES, max_body_bytes=MAX_BODY)
    live = LiveServer(create_app(settings)).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def body(tiny_log) -> dict:
    return valid_body(tiny_log)


# ------------------------------------------------------------------------------- endpoints
def test_health_readiness_model_and_openapi(http):
    assert http.get("/healthz").json() == {"status": "alive"}
    assert http.get("/readyz").json() == {"status": "ready", "version": "v1"}
    model = http.get("/v1/model").json()
    assert model["current"] == "v1" and model["manifest"]["tasks"][0] == "promo_stream"
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/score", "/v1/rank", "/healthz", "/readyz", "/v1/model", "/metrics", "/v1/reload",
            "/v1/rollback"} <= set(paths)


def test_score_gives_every_task_for_every_candidate_as_training_would(http, body, exported):
    answer = http.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["model_version"] == "v1" and [c["id"] for c in result["candidates"]] == ["c0", "c1", "c2"]
    got = np.array([[c["probabilities"][t] for t in result["tasks"]] for c in result["candidates"]])
    request = ScoreRequest.model_validate(body)
    expected = load_model(exported.run).probabilities(request_table(request.user, request.context, request.candidates))
    np.testing.assert_allclose(got, expected, atol=1e-4)  # the PyTorch model on the same table


def test_unknown_ids_score_through_oov_and_are_named(http, body):
    body["user"]["user_id"] = "listener-never-seen"
    body["user"]["user_history_shows"] = ["show-never-seen"]
    body["candidates"][1]["creative_id"] = "creative-never-seen"
    result = http.post("/v1/score", json=body).json()
    assert result["oov_fields"] == ["user_id", "user_history_shows"]
    assert [c["oov_fields"] for c in result["candidates"]] == [[], ["creative_id"], []]
    assert all(0 < p < 1 for c in result["candidates"] for p in c["probabilities"].values())
    metrics = http.get("/metrics").text
    assert 'unitarget_oov_total{field="creative_id"}' in metrics


def test_only_the_user_is_required_per_candidate_show_id(http):
    answer = http.post("/v1/score", json={"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}]})
    assert answer.status_code == 200, answer.text


def test_rank_by_a_weighted_objective_per_price(http, body):
    objective = {"weights": {"ad_stream": 1.0, "click": 2.0}, "per_price": True}
    result = http.post("/v1/rank", json=body | {"objective": objective, "top_k": 2}).json()
    scored = http.post("/v1/score", json=body).json()["candidates"]
    value = [(c["probabilities"]["ad_stream"] + 2 * c["probabilities"]["click"]) / body["candidates"][i]["price"]
             for i, c in enumerate(scored)]
    assert [c["index"] for c in result["candidates"]] == list(np.argsort(value)[::-1][:2])
    assert result["candidates"][0]["score"] == pytest.approx(max(value), rel=1e-6)


@pytest.mark.parametrize("objective, field", [
    ({"task": "no_such_task"}, "task"),
    ({"weights": {"nope": 1.0}}, "weights"),
    ({"task": "click", "weights": {"click": 1.0}}, "objective"),
])
def test_rank_names_a_bad_objective(http, body, objective, field):
    answer = http.post("/v1/rank", json=body | {"objective": objective})
    assert answer.status_code == 422 and field in json.dumps(answer.json()["detail"])


def test_rank_per_price_needs_every_price(http, body):
    del body["candidates"][2]["price"]
    answer = http.post("/v1/rank", json=body | {"objective": {"task": "click", "per_price": True}})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "candidates", 2, "price"]


def test_metrics_count_requests_latency_and_model(http, body):
    http.post("/v1/score", json=body)
    text = http.get("/metrics").text
    assert 'unitarget_requests_total{endpoint="/v1/score",status="200"}' in text
    assert 'unitarget_request_seconds_bucket{endpoint="/v1/score",le="+Inf"}' in text
    assert re.search(r'unitarget_model_info\{pid="\d+",version="v1"\} 1', text)
    assert "unitarget_model_in_sync 1.0" in text and "unitarget_batch_requests_count" in text


# ---------------------------------------------------------------------------- bad requests
def _raw(http: httpx.Client, content: bytes | str, content_type: str | None = "application/json",
         path: str = "/v1/score") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return http.post(path, content=content, headers=headers)


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_get_a_4xx_naming_the_field(http, name):
    content, status, loc = BAD_BODIES[name]
    answer = _raw(http, content)
    assert answer.status_code == status, answer.text
    if loc is not None:
        assert loc in [error["loc"] for error in answer.json()["detail"]]


def test_too_many_candidates_is_413(http, body):
    body["candidates"] = [{"show_id": "s"}] * (MAX_CANDIDATES + 1)
    answer = http.post("/v1/score", json=body)
    assert answer.status_code == 413 and f"at most {MAX_CANDIDATES}" in answer.text


def test_an_oversized_body_is_413_before_parsing(http):
    answer = _raw(http, b"{" * (MAX_BODY + 1))  # not even JSON: refused by its length alone
    assert answer.status_code == 413 and "larger than the limit" in answer.text
    chunked = http.post("/v1/score", content=iter([b" " * 16_384] * 8), headers={"content-type": "application/json"})
    assert chunked.status_code == 413  # no Content-Length: cut off once past the limit


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_415(http, body, content_type):
    assert _raw(http, json.dumps(body), content_type).status_code == 415


def test_the_service_keeps_serving_after_bad_input(http, body):
    for content, _, _ in BAD_BODIES.values():
        _raw(http, content)
    assert http.post("/v1/score", json=body).status_code == 200
    assert 'status="500"' not in http.get("/metrics").text


def test_random_bodies_never_get_a_500(http, body):
    """A small fuzz: the valid body with values swapped for junk, keys dropped or added."""
    rng = random.Random(0)
    statuses = []
    for _ in range(250):
        text = json.dumps(mutated(body, rng), allow_nan=True)
        statuses.append(_raw(http, text, path=rng.choice(["/v1/score", "/v1/rank"])).status_code)
    assert all(s < 500 for s in statuses), sorted(set(statuses))
    assert http.post("/v1/score", json=body).status_code == 200


# ------------------------------------------------------------------------- model versions
def _damaged_version(models: Path, name: str) -> None:
    shutil.rmtree(models / name, ignore_errors=True)
    shutil.copytree(models / "v1", models / name)
    data = (models / name / "model.onnx").read_bytes()
    (models / name / "model.onnx").write_bytes(data[: len(data) // 2])


def test_reload_under_traffic_drops_no_request_then_rolls_back(http, body, server):
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.post("/v1/score", json=body).status_code)

    def after_more_requests(n: int = 5) -> None:
        target = len(statuses) + n
        while len(statuses) < target and all(t.is_alive() for t in clients):
            time.sleep(0.005)

    clients = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        after_more_requests()
        during = len(statuses)
        reload = http.post("/v1/reload", json={"version": "v2"})
        assert reload.status_code == 200, reload.text
        answer = reload.json()
        assert (answer["current"], answer["previous"], answer["pointed"], answer["in_sync"]) == ("v2", "v1", "v2", True)
        assert answer["others_follow_within_s"] > 0 and answer["follow_error"] is None
        assert len(statuses) > during  # traffic was answered while v2 loaded and switched in
        assert http.post("/v1/score", json=body).json()["model_version"] == "v2"
        after_more_requests()
        rollback = http.post("/v1/rollback")
        assert rollback.json()["current"] == "v1"
        after_more_requests()
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert set(statuses) == {200}
    assert http.get("/v1/model").json()["current"] == "v1"


def test_a_failed_reload_leaves_the_old_version_serving(http, body, exported):
    _damaged_version(exported.models, "broken")
    answer = http.post("/v1/reload", json={"version": "broken"})
    assert answer.status_code == 422 and "truncated" in answer.json()["detail"]
    assert http.get("/v1/model").json()["current"] == "v1"
    assert http.post("/v1/score", json=body).json()["model_version"] == "v1"


@pytest.mark.parametrize("version", ["../models", "/etc", "no-such-version", "v1/../v2", "http://x/y"])
def test_reload_accepts_only_version_names_inside_the_models_directory(http, version):
    answer = http.post("/v1/reload", json={"version": version})
    assert answer.status_code == 404
    assert http.get("/v1/model").json()["current"] == "v1"


def test_a_server_whose_first_model_fails_is_alive_not_ready_until_a_good_reload(exported, body, tmp_path):
    models = models_copy(exported, tmp_path, ("v1",))
    _damaged_version(models, "bad-start")
    live = LiveServer(create_app(ServiceSettings.for_model(models / "bad-start"))).start()
    try:
        with httpx.Client(base_url=live.url) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 503
            answer = client.post("/v1/score", json=body)
            assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
            assert client.post("/v1/rollback").status_code == 409
            assert client.post("/v1/reload", json={"version": "v1"}).status_code == 200
            assert client.get("/readyz").json()["status"] == "ready"
            assert client.post("/v1/score", json=body).status_code == 200
    finally:
        live.stop()


def test_cli_serve_refuses_a_damaged_export_before_listening(exported, tmp_path):
    models = models_copy(exported, tmp_path, ("v1",))
    _damaged_version(models, "cli-broken")
    result = CliRunner().invoke(cli, ["serve", "--model", str(models / "cli-broken"), "--port", "1"])
    assert result.exit_code == 2 and "truncated" in result.output


def test_serve_with_two_workers_answers_on_one_port_and_stops_on_sigterm(exported, body, tmp_path):
    """The real command: two worker processes with their own SO_REUSEPORT sockets, a supervisor."""
    port = free_port()
    models = models_copy(exported, tmp_path, ("v1",))
    command = [sys.executable, "-m", "unitarget.cli", "serve", "--model", str(models / "v1"), "--port", str(port),
               "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.time() < deadline, process.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) for _ in range(8)]
        assert all(c.post("/v1/score", json=body).status_code == 200 for c in clients for _ in range(3))
        for client in clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with socket.socket() as probe:  # every worker let go of the port
        probe.bind(("127.0.0.1", port))


def test_overload_gets_a_fast_503_with_retry_after():
    """Two requests at once against a limit of one: the second is refused at once, unread."""
    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    metrics = Metrics(["/v1/score"])
    guard = Guard(slow_app, metrics=metrics, max_body_bytes=1024, max_in_flight=1, limited_paths=["/v1/score"])
    scope = {"type": "http", "method": "GET", "path": "/v1/score", "headers": []}

    async def call() -> list[dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        await guard(scope, None, send)
        return sent

    async def scenario():
        first = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        second = await asyncio.wait_for(call(), timeout=1)
        release.set()
        return await first, second

    first, second = asyncio.run(scenario())
    assert first[0]["status"] == 200 and second[0]["status"] == 503
    assert (b"retry-after", b"1") in second[0]["headers"]
    assert metrics.rejections("overload") == 1 and metrics.in_flight == 0


# ------------------------------------------------------------------- schema-driven fuzzing
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_requests_generated_from_the_openapi_schema_never_get_a_500(server, mode):
    """schemathesis: requests valid (positive) and invalid (negative) by the service's own
    /openapi.json, for every operation, sent over real HTTP; no 500, and 2xx bodies match the schema."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/score", "POST /v1/rank", "POST /v1/reload"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.get_request_payload_content_types():
            continue  # no body, no parameters: nothing can be made invalid
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=15, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def no_server_error(case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        no_server_error()
