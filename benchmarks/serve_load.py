"""Latency and throughput of the scoring service on loopback: POST /v1/score with N candidates each.

Starts the real service (`python -m unitarget.cli serve`) on a free 127.0.0.1 port, waits for
/readyz, then for each concurrency level runs that many closed-loop clients (each sends a request,
waits for the answer, sends the next) over keep-alive connections, for a bounded number of requests
and seconds. Reports p50/p90/p99/max latency as the client sees it, requests/s and non-200 answers.
The service is stopped at the end whatever happens.

The load generator is deliberately thin (raw HTTP/1.1 over asyncio streams, request bodies encoded
once) because it shares the machine's cores with the server; its own CPU time is reported.

    .venv/bin/python benchmarks/serve_load.py --model exports/v1           # an existing export
    .venv/bin/python benchmarks/serve_load.py                              # builds one first (~3 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def build_model(work: Path) -> Path:
    """A default-configuration model on a 300k-impression synthetic world, exported (minutes)."""
    from unitarget.config import Config, merge
    from unitarget.pipeline import train
    from unitarget.serving.export import export_model
    from unitarget.synth import WorldParams, write_synthetic_dataset

    log = write_synthetic_dataset(work / "world", WorldParams(n_users=50_000, n_shows=4_000,
                                                              n_impressions=300_000, n_days=28, seed=0))
    train(log, work / "run", merge(Config(), {"train": {"max_epochs": 1}}))
    return export_model(work / "run", work / "models" / "v1").out


def payloads(model: Path, candidates: int, count: int, seed: int = 0) -> list[dict]:
    """Request bodies drawn from the model's vocabularies (known ids, like live traffic)."""
    vocab = {k: v.get("values", []) for k, v in json.loads((model / "encoder.json").read_text())["vocabularies"].items()}
    rng = random.Random(seed)

    def pick(name: str, k: int | None = None):
        values = vocab.get(name) or [f"unknown-{name}"]
        return rng.choice(values) if k is None else rng.sample(values, min(k, len(values)))

    bodies = []
    for _ in range(count):
        user = {"user_id": pick("user_id"), "user_country": pick("user_country"),
                "user_age_bucket": pick("user_age_bucket"), "user_history_shows": pick("user_history_shows", 10),
                "user_followed_shows": pick("user_followed_shows", 3)}
        items = [{"id": f"c{i}", "show_id": pick("show_id"), "episode_id": pick("episode_id"),
                  "show_genre": pick("show_genre"), "show_topics": pick("show_topics", 2),
                  "show_publisher": pick("show_publisher"), "show_streams_30d": rng.randrange(0, 2_000_000),
                  "show_age_days": rng.randrange(0, 2_000), "format": pick("format"),
                  "campaign_id": pick("campaign_id"), "creative_id": pick("creative_id"), "slot": pick("slot"),
                  "layout": pick("layout"), "price": round(rng.uniform(0.5, 3.0), 2)} for i in range(candidates)]
        bodies.append({"user": user, "context": {"surface": pick("surface"), "device": pick("device")},
                       "candidates": items})
    return bodies


def http_request(port: int, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = (f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    return head + data


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def client(port: int, requests: list[bytes], stop_at: float, quota: list[int],
                 latencies: list[float], statuses: Counter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = random.randrange(len(requests))
    try:
        while quota[0] > 0 and time.perf_counter() < stop_at:
            quota[0] -= 1
            i = (i + 1) % len(requests)
            started = time.perf_counter()
            try:
                writer.write(requests[i])
                await writer.drain()
                statuses[await read_response(reader)] += 1
            except (OSError, asyncio.IncompleteReadError) as err:
                statuses[type(err).__name__] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def level(port: int, requests: list[bytes], clients: int, total: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    quota = [total]
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(port, requests, started + seconds, quota, latencies, statuses)
                           for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": round(wall, 2),
            "rps": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "errors": sum(n for s, n in statuses.items() if s != 200),
            "statuses": {str(k): v for k, v in statuses.items()},
            "client_cpu_share": round((time.process_time() - cpu) / wall, 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, workers: int, threads: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "unitarget.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="export directory (default: build one)")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=3_000, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per level at most")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        model = args.model or build_model(Path(work))
        port = free_port()
        bodies = [http_request(port, b) for b in payloads(model, args.candidates, 32)]
        server = start_server(model, port, args.workers, args.threads)
        try:
            asyncio.run(level(port, bodies, 1, 100, 30))  # warm-up, not reported
            results = [asyncio.run(level(port, bodies, int(c), args.requests, args.seconds))
                       for c in args.levels.split(",")]
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"{args.candidates} candidates per request, {len(bodies[0]):,} bytes; workers={args.workers}, "
          f"threads={args.threads}, cpus={os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print("| clients | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | client CPU |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['clients']} | {r['requests']} | {r['rps']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} "
              f"| {r['max_ms']} | {r['errors']} | {r['client_cpu_share']:.0%} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
