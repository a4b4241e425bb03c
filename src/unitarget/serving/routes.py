"""HTTP routes: scoring (``/v1/score``, ``/v1/rank``) and operations (health, model, metrics, versions).

Routes are thin: validate (pydantic, before any model work), take the current model once, call
``service``, return JSON. Scoring handlers are ``async``: a request's work is a few milliseconds of
CPU, and running it on the event loop, one request after another, serves more requests per second
than handing each to the thread pool, where they would contend for the GIL (measured in
docs/benchmarks.md); run one worker process per core for parallelism. Responses are serialised
with orjson (about 15x faster than the standard library on a 200-candidate answer) and returned
ready (the ``response_model`` documents them in the OpenAPI schema without a second validation
pass per request), with the version that scored them in an ``x-model-version`` header.

Scoring bodies are parsed once by ``pydantic_core.from_json`` (pydantic's own parser, in Rust; the
standard library's ``json.loads`` was 0.37 ms of a 200-candidate request, docs/benchmarks.md),
then validated by FastAPI as before. It
accepts what ``json.loads`` accepts (NaN, Infinity, big integers: pydantic then names the field) and
gives the same Python values; on any body it refuses, ``json.loads`` parses again, so malformed
bodies get exactly the errors they always got. A route's state comes from one dependency
(``Serving``), not one per object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import pydantic_core
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute

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


class _FastJSONRequest(Request):
    """A request whose JSON body is parsed by pydantic_core, falling back to ``json.loads`` (module docstring)."""

    async def json(self) -> Any:
        """The parsed body, cached like Starlette's."""
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError:  # let the standard parser refuse it, with the errors clients know
                self._json = json.loads(body)
        return self._json


class _FastJSONRoute(APIRoute):
    """An API route that hands FastAPI a ``_FastJSONRequest`` (FastAPI's documented custom-request pattern)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, called with the faster-parsing request."""
        handler = super().get_route_handler()

        async def fast(request: Request) -> Response:
            return await handler(_FastJSONRequest(request.scope, request.receive))

        return fast


scoring = APIRouter(prefix="/v1", tags=["scoring"], responses=_ERRORS, route_class=_FastJSONRoute)
operations = APIRouter(tags=["operations"])


def _json(payload: dict[str, Any], version: str) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json", headers={"x-model-version": version})


async def _scored(body: ScoreRequest, state: Serving) -> service.Scored:
    """Validate and encode this request alone, then score it in whatever batch it joins."""
    if len(body.candidates) > state.settings.max_candidates:
        raise service.RequestError(413, ["body", "candidates"], f"{len(body.candidates)} candidates; this "
                                   f"server scores at most {state.settings.max_candidates} per request")
    model = state.registry.require()
    ids, dense, flags = service.encode(model, body)
    scored = service.Scored(model, body, await state.batcher.score(model, ids, dense), flags)
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
