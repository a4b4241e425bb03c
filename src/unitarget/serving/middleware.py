"""The guard in front of every request: cheap refusals before any parsing, and the metrics.

A plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` costs a task and a response copy per
request). In order:

1. ``Content-Length`` above the limit -> 413 before a byte of the body is read; a body sent
   without a length (chunked) is cut off with a 413 as soon as it passes the limit;
2. a POST body that is not JSON -> 415;
3. more than ``max_in_flight`` scoring requests already being served -> 503 with ``Retry-After``,
   at once: a client retrying elsewhere beats one queued past its auction deadline. Probes,
   metrics and admin calls are never refused, so an overloaded server still reports itself.

Every request, refused or served, is counted and timed for ``/metrics``. Only scoring requests count
as in flight (``Metrics.in_flight``): the overload limit and the batcher's wait read it, and a
burst of probes or scrapes must neither refuse scoring nor make the batcher wait for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unitarget.serving.metrics import Metrics


class Guard:
    """ASGI middleware in front of the app: refuses malformed or oversized bodies, non-JSON posts and, on the limited
    paths, overload before any work, caps bodies as they stream, and times and counts every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, max_in_flight: int,
                 limited_paths: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.limited_paths = frozenset(limited_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        endpoint = self.metrics.endpoint(scope["path"])

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                code, reason, detail, headers = refusal
                self.metrics.reject(reason)
                await _send_json(send_and_note, code, detail, headers)
                return
            if scope["path"] not in self.limited_paths:  # probes, metrics, admin: not scoring work in flight
                await self.app(scope, self._limited(receive), send_and_note)
                return
            self.metrics.in_flight += 1
            try:
                await self.app(scope, self._limited(receive), send_and_note)
            finally:
                self.metrics.in_flight -= 1
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - started)

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that raises 413 once the body passes the limit. FastAPI re-raises an
        ``HTTPException`` met while reading a body and answers it with its status."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    self.metrics.reject("body_too_large")
                    raise HTTPException(413, f"request body is larger than the limit of {self.max_body_bytes} bytes")
            return message

        return limited

    def _refusal(self, scope: Scope) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        """(status, metrics reason, message, extra headers) of a request refused unread, else None."""
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "bad_length", "Content-Length is not a number", []
            if int(length) > self.max_body_bytes:
                return 413, "body_too_large", (f"request body of {int(length)} bytes is larger than the "
                                               f"limit of {self.max_body_bytes} bytes"), []
        has_body = (length is not None and int(length) > 0) or b"transfer-encoding" in headers
        if scope["method"] == "POST" and has_body and not _is_json(headers.get(b"content-type", b"")):
            return 415, "media_type", "the request body must be JSON: send Content-Type: application/json", []
        if scope["path"] in self.limited_paths and self.metrics.in_flight >= self.max_in_flight:
            return 503, "overload", (f"overloaded: {self.metrics.in_flight} requests in flight "
                                     f"(limit {self.max_in_flight}); retry shortly"), [(b"retry-after", b"1")]
        return None


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
