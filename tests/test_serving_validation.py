"""The scoring routes' one-pass body validation (``model_validate_json``, serving/routes.py) against
FastAPI's own parse-then-validate: whatever it accepts, FastAPI's path accepts as the same model;
whatever it refuses gets FastAPI's own answer, status and body, for every kind of bad body; and the
OpenAPI schema still documents the request models."""

from __future__ import annotations

import json
import random

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tests.serving_fixtures import BAD_BODIES, Exported, exported_model, models_copy, mutated, valid_body
from unitarget.serving.app import _add_error_handlers, create_app
from unitarget.serving.schemas import RankRequest, ScoreRequest
from unitarget.serving.settings import ServiceSettings

#: Bodies the JSON parsers may read differently: encodings, duplicate keys, numbers at the edges, escapes.
TRICKY = [
    b'{"user": {"user_id": "a"}, "user": {"user_id": "b"}, "candidates": [{"show_id": "s"}]}',
    b'\xef\xbb\xbf{"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}]}',
    '{"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}]}'.encode("utf-16"),
    b'{"user": {"user_id": "\xff"}, "candidates": [{"show_id": "s"}]}',
    b'{"user": {"user_id": "\\ud83d\\ude00\\u0000"}, "candidates": [{"show_id": "s"}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}]} trailing',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "show_age_days": 1.0}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "show_age_days": 1000000000000000}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": "1.5"}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": true}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": 1e-400}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s", "price": 0.30000000000000004}]}',
    b'{"user": {"user_id": "u", "features": {"f": 3, "g": [1, 2.5], "h": 9007199254740993, "i": []}}, '
    b'"candidates": [{"show_id": "s", "features": {"v": 1' + b"0" * 40 + b'}}]}',
    b'{"user": {"user_id": "u"}, "context": {"ts": 1700000000}, "candidates": [{"show_id": "s"}]}',
    b'{"user": {"user_id": "u"}, "context": {"ts": "2026-01-01T00:00:00+05:00"}, "candidates": [{"show_id": "s"}]}',
    b'{"user": {"user_id": "u"}, "context": {"ts": "2026-01-01"}, "candidates": [{"show_id": "s"}]}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}], "objective": {"task": "click"}, "top_k": 1}',
    b'{"user": {"user_id": "u"}, "candidates": [{"show_id": "s"}], "objective": {"weights": {"click": 1}}, '
    b'"top_k": 1.0}',
    b"", b"null", b"[]", b'"text"', b"{}",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


@pytest.fixture(scope="module")
def bodies(tiny_log) -> list[bytes]:
    """The bad bodies, the tricky ones, and 300 mutations of a valid body (some valid, most not)."""
    rng = random.Random(1)
    body = valid_body(tiny_log)
    fuzzed = [json.dumps(mutated(body, rng), allow_nan=True).encode() for _ in range(300)]
    objective = {"objective": {"weights": {"click": 1.0}}, "top_k": 2}
    fuzzed += [json.dumps(mutated(body | objective, rng), allow_nan=True).encode() for _ in range(100)]
    return [text.encode() for text, _, _ in BAD_BODIES.values()] + TRICKY + fuzzed


def _fastapi_model(model: type[ScoreRequest], body: bytes) -> ScoreRequest | None:
    """What FastAPI's path builds from ``body`` (``json.loads``, then validation), None where it refuses."""
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError and ValidationError are ValueErrors
        return None


@pytest.mark.parametrize("model", [ScoreRequest, RankRequest])
def test_whatever_the_one_pass_validation_accepts_fastapi_builds_the_same(bodies, model):
    accepted = 0
    for body in bodies:
        try:
            fast = model.model_validate_json(body)
        except ValidationError:
            continue  # refused: FastAPI's own handler answers (next test)
        accepted += 1
        reference = _fastapi_model(model, body)
        assert reference is not None, body
        assert repr(fast.model_dump()) == repr(reference.model_dump()), body  # repr: 3 and 3.0 differ
    assert accepted >= 10  # the fuzz keeps some bodies valid


def _reference_app() -> FastAPI:
    """Plain FastAPI routes with the service's body models and error handlers: what its answers must be."""
    app = FastAPI()

    @app.post("/v1/score")
    async def score(body: ScoreRequest) -> dict:
        return {}

    @app.post("/v1/rank")
    async def rank(body: RankRequest) -> dict:
        return {}

    _add_error_handlers(app)
    return app


def test_every_refused_body_gets_fastapis_own_status_and_body(exported, tmp_path, bodies):
    models = models_copy(exported, tmp_path, ("v1",))
    service = create_app(ServiceSettings.for_model(models / "v1", check_parity=False))
    headers = {"content-type": "application/json"}
    compared = 0
    with TestClient(service) as ours, TestClient(_reference_app()) as theirs:
        for body in bodies:
            for path in ("/v1/score", "/v1/rank"):
                expected = theirs.post(path, content=body, headers=headers)
                if expected.status_code == 200:
                    continue  # valid for FastAPI too: scored (or refused by the model, not the schema)
                answer = ours.post(path, content=body, headers=headers)
                assert (answer.status_code, answer.json()) == (expected.status_code, expected.json()), body
                compared += 1
        assert compared > 300
        paths = ours.get("/openapi.json").json()["paths"]
    for path, model in (("/v1/score", "ScoreRequest"), ("/v1/rank", "RankRequest")):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
