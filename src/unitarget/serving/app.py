"""The FastAPI app factory and ``serve`` (uvicorn).

``create_app(settings)`` builds one app: the model is loaded in ``lifespan`` (not at import), so
``/healthz`` answers at once and ``/readyz`` turns 200 only after the load, its checks and a
warm-up inference passed. The version loaded is the one the models directory's version pointer
names (``pointer.py``), or ``settings.version`` where there is no pointer yet. If the first load
fails the app still starts, not ready, and a ``/v1/reload`` of a good version makes it ready.
A background task keeps the worker on the pointed version (``_follow_pointer``).

Bad input never reaches the model and never yields a 500: malformed JSON -> 400; a missing field,
a wrong type, NaN or an unknown key -> 422 naming the field; too many candidates or too large a
body -> 413; a body that is not JSON -> 415.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import unitarget
from unitarget.errors import UnitargetError
from unitarget.serving import pointer as vp, registry as reg
from unitarget.serving.batching import Batcher
from unitarget.serving.metrics import Metrics
from unitarget.serving.middleware import Guard
from unitarget.serving.routes import Serving, operations, scoring
from unitarget.serving.service import RequestError
from unitarget.serving.settings import ServiceSettings
from unitarget.serving.workers import supervise

logger = logging.getLogger("unitarget.serving")

SCORING_PATHS = ("/v1/score", "/v1/rank")
#: Most validation errors listed in one response (a 1,000-candidate body can have thousands).
MAX_ERRORS_SHOWN = 20


def create_app(settings: ServiceSettings, registry: reg.ModelRegistry | None = None) -> FastAPI:
    """The service for ``settings``; ``registry`` may be given pre-loaded (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = app.state.serving.registry
        if registry.current is None:
            try:  # the version only: a reference held here, for the app's life, would keep it resident forever
                version = (await run_in_threadpool(registry.start, settings.version)).version
                logger.info("serving model version %s", version)
            except UnitargetError as err:  # start anyway, not ready: a reload can fix it
                logger.error("model version %s did not load: %s", registry.pointed or settings.version, err)
        watcher = asyncio.create_task(_follow_pointer(registry, metrics, settings.pointer_poll_s))
        try:
            yield
        finally:
            watcher.cancel()
            batcher.close()

    app = FastAPI(title="unitarget scoring service", version=unitarget.__version__, lifespan=lifespan,
                  description="Per-task probabilities and rankings of ad and promotion candidates.")
    metrics = Metrics([*SCORING_PATHS, "/healthz", "/readyz", "/metrics", "/v1/model", "/v1/reload",
                       "/v1/rollback", "/openapi.json", "/docs"])
    batcher = Batcher(window_s=settings.batch_window_ms / 1000, max_rows=settings.batch_max_rows,
                      in_flight=lambda: metrics.in_flight, observe=metrics.count_batch)
    registry = registry or reg.ModelRegistry(settings.models_dir, threads=settings.threads,
                                             check_parity=settings.check_parity)
    app.state.serving = Serving(registry, settings, metrics, batcher)
    app.include_router(scoring)
    app.include_router(operations)
    _add_error_handlers(app)
    app.add_middleware(Guard, metrics=metrics, max_body_bytes=settings.max_body_bytes,
                       max_in_flight=settings.max_in_flight, limited_paths=SCORING_PATHS)
    return app


async def _follow_pointer(registry: reg.ModelRegistry, metrics: Metrics, interval: float) -> None:
    """Every ``interval`` seconds, one ``stat`` of the version pointer; when it moved (or the last attempt found a
    switch running here), follow it on a thread, off the event loop. Polling costs nothing per request and reaches
    idle workers too; the poll adds at most ``interval`` to a follow that then loads and checks the version."""
    seen: tuple[int, int, int] | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            key = vp.stat_key(registry.models_dir)
            if key == seen:
                continue
            outcome = await asyncio.to_thread(registry.follow)
        except Exception:  # the watcher must outlive any one failure; the next tick tries again
            logger.exception("following the version pointer failed")
            continue
        if outcome != "busy":
            seen = key
        if outcome == "switched":
            logger.info("following the version pointer: now serving %s", registry.pointed)
        elif outcome == "failed":
            metrics.follow_failures.inc()
            logger.error("cannot serve the pointed version %s, still serving %s: %s", registry.pointed,
                         registry.current.version if registry.current else None, registry.follow_error)


def _add_error_handlers(app: FastAPI) -> None:
    statuses: dict[type[Exception], int] = {
        reg.NotReady: 503, reg.VersionNotFound: 404, reg.RegistryBusy: 409, UnitargetError: 422,
    }

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        return JSONResponse({"detail": [_clean(e) for e in errors[:MAX_ERRORS_SHOWN]]}, status_code=status)

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    async def unitarget_error(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in statuses.items() if isinstance(exc, kind))
        headers = {"retry-after": "1"} if status == 503 else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(UnitargetError, unitarget_error)


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error as plain JSON: location, message, type. The offending input is left out:
    it may be NaN or a lone surrogate, which JSON responses cannot carry, and echoing is not needed."""
    message = str(error.get("msg", "invalid"))
    context = error.get("ctx") or {}
    if error.get("type") == "json_invalid" and isinstance(context.get("error"), str):
        message = f"malformed JSON: {context['error']} at character {error.get('loc', ('', '?'))[-1]}"
    loc = [part if isinstance(part, int) else _printable(str(part)) for part in error.get("loc", ())]
    return {"loc": loc, "msg": _printable(message), "type": str(error.get("type", "value_error"))}


def _printable(text: str, limit: int = 200) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def serve(settings: ServiceSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          access_log: bool = False, log_level: str = "info") -> None:
    """Run the service with uvicorn until interrupted; ``workers`` > 1 runs that many processes,
    each with its own ``SO_REUSEPORT`` socket on the port (``workers.py`` says why).

    Each worker holds its own model, batcher and counters. A ``/v1/reload`` or ``/v1/rollback`` runs
    in the worker that receives it, which then moves the models directory's version pointer; every
    other worker follows within ``pointer_poll_s`` plus its own load (``registry.py``).
    """
    if workers == 1:
        import uvicorn

        config = uvicorn.Config(functools.partial(create_app, settings), factory=True, host=host, port=port,
                                access_log=access_log, log_level=log_level, timeout_graceful_shutdown=10)
        uvicorn.Server(config).run()
    else:
        supervise(functools.partial(_serve_on, settings, access_log, log_level), host=host, port=port,
                  workers=workers)


def _serve_on(settings: ServiceSettings, access_log: bool, log_level: str, sock: socket.socket) -> None:
    """One worker process: the app on an already bound socket."""
    import uvicorn

    config = uvicorn.Config(functools.partial(create_app, settings), factory=True, access_log=access_log,
                            log_level=log_level, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])
