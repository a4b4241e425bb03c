"""HTTP routes: scoring (``/v1/score``, ``/v1/rank``) and operations (health, model, metrics, versions).

Routes are thin: validate (pydantic, before any model work), take the current model once, call
``service``, return JSON. Scoring handlers are ``async``: a request's work is a few milliseconds of
CPU, and running it on the event loop, one request after another, serves more requests per second
than handing each to the thread pool, where they would contend for the GIL (measured in
docs/benchmarks.md); run one worker process per core for parallelism. Response bodies are written
as bytes (``responses.py``) and returned ready (the ``response_model`` documents them in the
OpenAPI schema without a second validation pass per request), with the version that scored them
in an ``x-model-version`` header.

A scoring body is parsed and validated in one pass, ``ScoreRequest.model_validate_json`` (or
``RankRequest``'s) on the raw bytes: pydantic-core reads the JSON straight into the models, with no
intermediate Python objects: about 0.6 ms of CPU for 200 candidates, against 0.9 ms for parsing
then validating (1.5 ms with the garbage collector's default threshold; docs/benchmarks.md).
Only the bodies it accepts take this path, and for those it builds the model FastAPI's own
parse-then-validate would build (tests/test_serving_validation.py compares them). Any body it refuses
goes to FastAPI's own handler, which parses it with ``json.loads`` and validates it again, so every
4xx answer (malformed JSON, a missing or wrong field, NaN, Infinity, big integers, lone surrogates,
non-UTF-8 bytes) is the one FastAPI gives, by construction. The endpoints keep their ``body``
parameter, so the OpenAPI schema documents the request models as before. A route's state comes from
one dependency (``Serving``), not one per object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, get_type_hints

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from unitarget.serving import service
from unitarget.serving.batching import Batcher
from unitarget.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics
from unitarget.serving.registry import ModelRegistry
from unitarget.serving.schemas import (
    ErrorBody,
    ModelVersions,
    RankRequest,
    RankResponse,
    ReloadRequest,
    ScoreRequest,
    ScoreResponse,
)
from unitarget.serving.settings import ServiceSettings


@dataclass(frozen=True)
class Serving:
    """What the routes of one app work with (``app.state.serving``)."""

    registry: ModelRegistry
    settings: ServiceSettings
    metrics: Metrics
    batcher: Batcher


async def _serving(request: Request) -> Serving:
    return request.app.state.serving


State = Annotated[Serving, Depends(_serving)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in {
        400: "malformed JSON", 413: "body or candidate list too large", 415: "body is not JSON",
        422: "a field is missing, of the wrong type, or out of range (the detail names it)",
        503: "no model loaded yet, or overloaded (see Retry-After)",
    }.items()
}


class _ValidatedBodyRoute(APIRoute):
    """A scoring route whose body is validated straight from the bytes (module docstring); FastAPI's own handler
    answers every body the fast path refuses, and builds the OpenAPI schema from the endpoint as usual.

    The endpoint must take ``(body, state)``: the fast path calls it with the validated body and the app's
    ``Serving``, the one dependency such an endpoint has.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """A handler that validates the body with pydantic-core and calls the endpoint, or defers to FastAPI's."""
        fastapi_handler = super().get_route_handler()
        model: type[ScoreRequest] = get_type_hints(self.endpoint)["body"]
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            try:
                body = model.model_validate_json(await request.body())
            except ValidationError:  # FastAPI parses and validates it again (the body is cached): its answer
                return await fastapi_handler(request)
            return await endpoint(body, request.app.state.serving)

        return handler


scoring = APIRouter(prefix="/v1", tags=["scoring"], responses=_ERRORS, route_class=_ValidatedBodyRoute)
operations = APIRouter(tags=["operations"])


def _json(body: bytes, version: str) -> Response:
    return Response(body, media_type="application/json", headers={"x-model-version": version})


async def _scored(body: ScoreRequest, state: Serving) -> service.Scored:
    """Check this request alone (a bad one is answered before batching), then encode and score it in whatever batch
    it joins."""
    if len(body.candidates) > state.settings.max_candidates:
        raise service.RequestError(413, ["body", "candidates"], f"{len(body.candidates)} candidates; this "
                                   f"server scores at most {state.settings.max_candidates} per request")
    model = state.registry.require()
    probabilities, flags = await state.batcher.score(model, service.prepare(model, body))
    scored = service.Scored(model, body, probabilities, flags)
    state.metrics.count_scored(len(body.candidates), scored.oov_counts())
    return scored


@scoring.post("/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, state: State) -> Response:
    """Every task's probability for each candidate, and which fields the model did not know."""
    scored = await _scored(body, state)
    return _json(service.score(scored), scored.model.version)


@scoring.post("/rank", response_model=RankResponse)
async def rank(body: RankRequest, state: State) -> Response:
    """Candidates ordered by the request's objective, best first (top_k of them)."""
    scored = await _scored(body, state)
    return _json(service.rank(scored, body), scored.model.version)


@operations.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Says nothing about the model (see /readyz)."""
    return {"status": "alive"}


@operations.get("/readyz", responses={503: {"description": "no model loaded and warmed up"}})
async def readyz(state: State) -> JSONResponse:
    """Readiness: a model is loaded, its checks and a warm-up inference passed."""
    model = state.registry.current
    if model is None:
        return JSONResponse({"status": "not ready", "detail": state.registry.last_error}, status_code=503,
                            headers={"retry-after": "1"})
    return JSONResponse({"status": "ready", "version": model.version})


def _versions(registry: ModelRegistry) -> dict[str, Any]:
    """This worker's versions and where it stands against the version pointer."""
    current, previous = registry.current, registry.previous
    return {"current": current.version if current else None, "previous": previous.version if previous else None,
            "worker": os.getpid(), "pointed": registry.pointed, "in_sync": registry.in_sync,
            "follow_error": registry.follow_error}


@operations.get("/v1/model", response_model=ModelVersions, responses={503: {"model": ErrorBody}})
async def model_info(state: State) -> dict[str, Any]:
    """The manifest of the version this worker serves, the version a rollback would return to, and whether it serves
    the pointed version (every worker follows the pointer; ``follow_error`` says why one could not)."""
    model = state.registry.require()
    manifest = model.manifest | {"loaded_at": model.loaded_at, "parity_at_load": model.parity_max_abs_diff}
    return _versions(state.registry) | {"manifest": manifest}


@operations.get("/metrics", response_class=PlainTextResponse)
async def metrics_text(state: State) -> PlainTextResponse:
    """Prometheus text format (this worker's counters)."""
    model = state.registry.current
    text = state.metrics.render(model.version if model else None, state.registry.in_sync)
    return PlainTextResponse(text, media_type=METRICS_CONTENT_TYPE)


def _switched(state: Serving) -> dict[str, Any]:
    """The answer to a reload or rollback: this worker's versions and how soon the others follow (their pointer
    poll, plus a load with the same checks: about this worker's load time, twice for sharing the cores)."""
    bound = state.settings.pointer_poll_s + 2 * state.registry.load_seconds
    return _versions(state.registry) | {"others_follow_within_s": round(bound, 2)}


@operations.post("/v1/reload", response_model=ModelVersions,
                 responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}})
def reload(body: ReloadRequest, state: State) -> dict[str, Any]:
    """Switch every worker to another version inside the models directory, after it passed every check here.

    Requests in flight finish on the old version; if loading fails, the old version keeps serving in every worker
    (the version pointer moves only after the check). The others follow within ``others_follow_within_s``.
    """
    state.registry.load(body.version)
    return _switched(state)


@operations.post("/v1/rollback", response_model=ModelVersions, responses={409: {"model": ErrorBody}})
def rollback(state: State) -> dict[str, Any]:
    """Switch every worker back to the version this one served before its last switch."""
    state.registry.rollback()
    return _switched(state)
