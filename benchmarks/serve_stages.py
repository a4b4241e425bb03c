"""Where one ``/v1/score`` request's CPU goes, stage by stage, in process (no sockets).

    .venv/bin/python benchmarks/serve_stages.py --model exports/v1 [--candidates 200] [--repeats 300] [--batch 4]

Loads the export (no parity check) as a worker does, builds request bodies as ``serve_load.py``
does (ids from the model's vocabularies), then times each stage of the request path on its own,
``--repeats`` times, cycling over 32 bodies, and reports the median CPU time in milliseconds:

- parse + validate: the body to a ``ScoreRequest`` in one pass (``model_validate_json``, the
  service's path), and for comparison the former path (``pydantic_core.from_json``, then
  ``model_validate`` as FastAPI's own validation does);
- the extra-feature check and the request's time (``service.prepare``);
- encode (``RequestEncoder.encode_many``) and ONNX Runtime, for the request alone and per request
  of ``--batch`` encoded and scored together (what a loaded worker's batches do);
- the response body (bytes from the probabilities and flags).

Then the whole app (``create_app``) called as ASGI, guard middleware, routing, metrics and the
inference thread included: wall and CPU time (of the process, both threads) per request, one
request at a time and ``--batch`` at once (with the requests per ONNX Runtime call the batcher
formed); the ASGI part is the one-at-a-time CPU minus the stages. Uvicorn's HTTP parsing and the
socket are not included. Compare figures taken in the same run: the cores may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import payloads  # noqa: E402

from unitarget.serving import service  # noqa: E402
from unitarget.serving.app import create_app  # noqa: E402
from unitarget.serving.registry import ModelRegistry  # noqa: E402
from unitarget.serving.schemas import ScoreRequest  # noqa: E402
from unitarget.serving.settings import ServiceSettings  # noqa: E402


def median_ms(work: Callable[[int], Any], repeats: int) -> float:
    """Median CPU time of this thread in ``work(i)`` over ``repeats`` calls, in ms (CPU time, not wall: the figures
    are taken on shared cores; ONNX Runtime with one intra-op thread computes on the calling thread)."""
    times = []
    for i in range(repeats):
        started = time.thread_time()
        work(i)
        times.append(time.thread_time() - started)
    return round(statistics.median(times) * 1000, 3)


async def call_app(app: Any, body: bytes) -> tuple[int, bytes]:
    """One POST /v1/score through the ASGI app; (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/score", "raw_path": b"/v1/score", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def stages(model_dir: Path, bodies: list[bytes], repeats: int, batch: int) -> dict[str, float]:
    """Median ms of each stage of one request, alone and as one of ``batch`` (module docstring)."""
    import pydantic_core

    registry = ModelRegistry(model_dir.parent, check_parity=False)
    registry.start(model_dir.name)
    model = registry.require()
    n = len(bodies)
    requests = [ScoreRequest.model_validate_json(b) for b in bodies]
    parts = [service.prepare(model, r) for r in requests]
    encoded = [model.request_encoder.encode_many([p]) for p in parts]
    together = [model.request_encoder.encode_many([parts[(k + j) % n] for j in range(batch)]) for k in range(n)]
    scored = [service.Scored(model, r, model.run_graph(e.ids, e.dense), e.flags) for r, e in zip(requests, encoded)]
    result = {
        "parse (pydantic_core.from_json, FastAPI's former path)": median_ms(
            lambda i: pydantic_core.from_json(bodies[i % n]), repeats),
        "validate (model_validate, FastAPI's former path)": median_ms(
            lambda i: ScoreRequest.model_validate(pydantic_core.from_json(bodies[i % n])), repeats),
        "parse + validate (model_validate_json)": median_ms(
            lambda i: ScoreRequest.model_validate_json(bodies[i % n]), repeats),
        "extra-feature check + time": median_ms(lambda i: service.prepare(model, requests[i % n]), repeats),
        "encode, alone": median_ms(lambda i: model.request_encoder.encode_many([parts[i % n]]), repeats),
        f"encode, per request of {batch} together": round(median_ms(lambda i: model.request_encoder.encode_many(
            [parts[(i + j) % n] for j in range(batch)]), repeats) / batch, 3),
        "ONNX Runtime, alone": median_ms(lambda i: model.run_graph(encoded[i % n].ids, encoded[i % n].dense), repeats),
        f"ONNX Runtime, per request of {batch} together": round(median_ms(
            lambda i: model.run_graph(together[i % n].ids, together[i % n].dense), repeats) / batch, 3),
        "response body": median_ms(lambda i: service.score(scored[i % n]), repeats),
    }
    result["validate (model_validate, FastAPI's former path)"] = round(
        result["validate (model_validate, FastAPI's former path)"]
        - result["parse (pydantic_core.from_json, FastAPI's former path)"], 3)
    app = create_app(ServiceSettings.for_model(model_dir, check_parity=False), registry=registry)

    async def whole(count: int) -> tuple[float, float, float]:
        """(wall ms, CPU ms of the process, ONNX Runtime calls) per request, ``count`` requests at a time."""
        serving = app.state.serving
        calls_before = serving.metrics.batch_requests.collect()[0].samples
        rounds = repeats // count
        walls = []
        cpu = time.process_time()
        for k in range(rounds):
            started = time.perf_counter()
            answers = await asyncio.gather(*(call_app(app, bodies[(k * count + j) % n]) for j in range(count)))
            walls.append(time.perf_counter() - started)
            assert all(status == 200 for status, _ in answers)
        cpu = time.process_time() - cpu
        calls = _count(serving.metrics.batch_requests.collect()[0].samples) - _count(calls_before)
        return statistics.median(walls) * 1000 / count, cpu * 1000 / (rounds * count), calls / (rounds * count)

    asyncio.run(whole(1))  # warm-up
    for count in (1, batch):
        wall, cpu, calls = asyncio.run(whole(count))
        label = "one request" if count == 1 else f"{count} requests together, per request"
        result[f"whole app, {label}: wall"] = round(wall, 3)
        result[f"whole app, {label}: CPU"] = round(cpu, 3)
        if count > 1:
            result[f"whole app, {label}: requests per ONNX call"] = round(1 / calls, 2)
    measured = ["parse + validate (model_validate_json)", "extra-feature check + time", "encode, alone",
                "ONNX Runtime, alone", "response body"]
    result["ASGI, routing, guard, metrics, thread handoff (CPU, by difference)"] = round(
        result["whole app, one request: CPU"] - sum(result[k] for k in measured), 3)
    return result


def _count(samples: list[Any]) -> float:
    return next(s.value for s in samples if s.name.endswith("_count"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="export directory")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4, help="requests arriving together (a loaded worker)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        model_dir = Path(work) / "models" / "v1"
        shutil.copytree(args.model, model_dir)  # the version pointer a registry writes lands in the copy
        bodies = [orjson.dumps(b) for b in payloads(model_dir, args.candidates, 32)]
        result = stages(model_dir, bodies, args.repeats, args.batch)
    print(f"{args.candidates} candidates, {len(bodies[0]):,} bytes per body; median ms over {args.repeats} runs")
    print("| stage | ms |\n| --- | ---: |")
    for name, value in result.items():
        print(f"| {name} | {value} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
