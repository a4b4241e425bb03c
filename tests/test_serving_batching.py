"""The dynamic batcher (serving/batching.py): batched rows equal the rows each request gets alone,
a lone request does not wait, the window and the row budget bound a batch, versions never share a
call; over HTTP a bad request among good ones is answered alone; the guard counts only scoring
requests as in flight."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest

from tests.serving_fixtures import Exported, LiveServer, exported_model, models_copy
from unitarget.serving.app import create_app
from unitarget.serving.batching import Batcher, Rows
from unitarget.serving.encoding import Part
from unitarget.serving.metrics import Metrics
from unitarget.serving.middleware import Guard
from unitarget.serving.runtime import ExportedModel, load_exported
from unitarget.serving.schemas import Candidate, Context, User
from unitarget.serving.settings import ServiceSettings


NOW = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


@pytest.fixture(scope="module")
def model(exported) -> ExportedModel:
    return load_exported(exported.v1, check_parity=False)


def _parts(tiny_log, count: int, seed: int = 0) -> list[Part]:
    """``count`` requests of 1-40 candidates drawn from the log (some ids unknown), each with its own user and time."""
    rows = tiny_log.slice(0, 400).to_pylist()
    rng = random.Random(seed)
    parts = []
    for k in range(count):
        picked = rng.sample(rows, rng.randint(1, 40))
        candidates = [Candidate(show_id=r["show_id"] if rng.random() < 0.8 else "unknown-show", format=r["format"],
                                show_streams_30d=r["show_streams_30d"]) for r in picked]
        user = User(user_id=picked[0]["user_id"], user_country=picked[0]["user_country"])
        parts.append(Part(user, Context(surface=picked[0]["surface"]), candidates, NOW + timedelta(hours=7 * k)))
    return parts


def _alone(model: ExportedModel, part: Part) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ids, dense, flags = model.request_encoder.encode(*part)
    return model.run_graph(ids, dense), flags


def _batcher(window_s: float, max_rows: int, in_flight: int) -> tuple[Batcher, list[tuple[int, int]]]:
    batches: list[tuple[int, int]] = []
    batcher = Batcher(window_s=window_s, max_rows=max_rows, in_flight=lambda: in_flight,
                      observe=lambda requests, rows: batches.append((requests, rows)))
    return batcher, batches


async def _score_all(batcher: Batcher, models: list[ExportedModel], parts: list[Part]) -> list[Rows]:
    try:
        return await asyncio.wait_for(asyncio.gather(*(batcher.score(m, p) for m, p in zip(models, parts))), timeout=30)
    finally:
        batcher.close()


def _assert_same(got: Rows, expected: Rows) -> None:
    assert got[0].shape == expected[0].shape
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-6)
    assert got[1].keys() == expected[1].keys()
    for name, flags in expected[1].items():
        np.testing.assert_array_equal(got[1][name], flags, err_msg=name)


def test_batched_requests_get_exactly_the_rows_they_get_alone(model, tiny_log):
    parts = _parts(tiny_log, 24)
    batcher, batches = _batcher(window_s=5.0, max_rows=100_000, in_flight=len(parts))
    together = asyncio.run(_score_all(batcher, [model] * len(parts), parts))
    assert batches[0][0] > 1 and sum(n for n, _ in batches) == len(parts)
    for got, part in zip(together, parts):
        _assert_same(got, _alone(model, part))


def test_a_lone_request_runs_at_once_not_after_the_window(model, tiny_log):
    """A window of 60 s: a request that waited for it would time out (30 s)."""
    batcher, batches = _batcher(window_s=60.0, max_rows=4096, in_flight=1)
    asyncio.run(_score_all(batcher, [model], _parts(tiny_log, 1)))
    assert batches == [(1, batches[0][1])]


def test_a_request_waits_for_others_in_flight_at_most_the_window(model, tiny_log):
    """Five requests in flight but one ever arrives: it runs once the 50 ms window has passed."""
    batcher, batches = _batcher(window_s=0.05, max_rows=4096, in_flight=5)
    asyncio.run(_score_all(batcher, [model], _parts(tiny_log, 1)))
    assert len(batches) == 1


def test_the_row_budget_splits_batches_and_a_larger_request_runs_alone(model, tiny_log):
    parts = _parts(tiny_log, 12, seed=1)
    budget = 60
    batcher, batches = _batcher(window_s=5.0, max_rows=budget, in_flight=len(parts))
    together = asyncio.run(_score_all(batcher, [model] * len(parts), parts))
    assert sum(n for n, _ in batches) == len(parts) and len(batches) > 1
    assert all(rows <= budget or n == 1 for n, rows in batches)
    for got, part in zip(together, parts):
        _assert_same(got, _alone(model, part))


def test_two_versions_never_share_a_call_and_window_zero_turns_batching_off(exported, model, tiny_log):
    other = load_exported(exported.models / "v2", check_parity=False)
    parts = _parts(tiny_log, 6, seed=2)
    models = [model, other] * 3
    batcher, batches = _batcher(window_s=5.0, max_rows=4096, in_flight=len(parts))
    asyncio.run(_score_all(batcher, models, parts))
    assert sorted(n for n, _ in batches) == [3, 3]
    off, single = _batcher(window_s=0.0, max_rows=4096, in_flight=len(parts))
    for got, part in zip(asyncio.run(_score_all(off, models, parts)), parts):
        _assert_same(got, _alone(model, part))
    assert [n for n, _ in single] == [1] * len(parts)


def test_over_http_a_bad_request_in_a_batch_is_answered_alone(exported, tmp_path):
    """Good and bad requests sent together to a server with a 50 ms window: each good one gets what
    it gets alone, the bad one the same 422 body as alone."""
    models = models_copy(exported, tmp_path, ("v1",))
    live = LiveServer(create_app(ServiceSettings.for_model(models / "v1", batch_window_ms=50))).start()
    good = [{"user": {"user_id": f"u{i}"}, "context": {"ts": "2026-01-20T08:30:00Z"},
             "candidates": [{"show_id": f"s{j:05d}"} for j in range(i + 1)]} for i in range(6)]
    bad = {"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "features": {"no_such_feature": 1.0}}]}
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            alone = [client.post("/v1/score", json=b) for b in [*good, bad]]
        answers: list[httpx.Response | None] = [None] * len(alone)

        def send(i: int, body: dict) -> None:
            with httpx.Client(base_url=live.url, timeout=30) as own:
                answers[i] = own.post("/v1/score", json=body)

        threads = [threading.Thread(target=send, args=(i, b)) for i, b in enumerate([*good, bad])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for together, single in zip(answers, alone):
            assert together is not None and together.status_code == single.status_code
            assert together.json() == single.json()
        assert alone[-1].status_code == 422 and alone[-1].json()["detail"][0]["loc"][-1] == "no_such_feature"
        assert all(a.headers["x-model-version"] == "v1" for a in alone[:-1])
    finally:
        live.stop()


def test_probes_and_scrapes_do_not_count_as_scoring_in_flight():
    seen: list[int] = []
    metrics = Metrics(["/v1/score", "/healthz"])

    async def app(scope, receive, send):
        seen.append(metrics.in_flight)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def noop(message):
        return None

    guard = Guard(app, metrics=metrics, max_body_bytes=1024, max_in_flight=1, limited_paths=["/v1/score"])
    for path in ("/healthz", "/v1/score", "/healthz"):
        asyncio.run(guard({"type": "http", "method": "GET", "path": path, "headers": []}, None, noop))
    assert seen == [0, 1, 0] and metrics.in_flight == 0
