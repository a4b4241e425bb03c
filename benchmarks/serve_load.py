"""Latency and throughput of the scoring service on loopback: POST /v1/score with N candidates each.

Starts the real service (`python -m unitarget.cli serve`) on a free 127.0.0.1 port, waits for
/readyz, then for each concurrency level runs that many closed-loop clients (each sends a request,
waits for the answer, sends the next) over keep-alive connections, for a bounded number of requests
and seconds. Reports p50/p90/p99/max latency as the client sees it, requests/s, non-200 answers and
the batches the workers formed in each level (requests per ONNX Runtime call, from every worker's
/metrics). The service is stopped at the end whatever happens. The export is served from a
temporary models directory (a copy as v1, and v2 for the soak), so the version pointer a server
writes never lands beside the original.

``--soak-seconds S`` adds a soak: ``--soak-clients`` clients for S seconds while the version is
reloaded every ``--reload-every`` seconds between v1 and v2; it reports latency, errors, reloads
(and when each ended) and each worker's RSS (``/proc/<pid>/status``) every ``--rss-every`` seconds,
so growth can be told from the second resident version (after the first reload a worker holds two:
the current and the previous, kept for rollback). ``--levels ""`` runs the soak alone.

The load generator is deliberately thin (raw HTTP/1.1 over asyncio streams, request bodies encoded
once) because it shares the machine's cores with the server; its own CPU time is reported.

    .venv/bin/python benchmarks/serve_load.py --model exports/v1           # an existing export
    .venv/bin/python benchmarks/serve_load.py                              # builds one first (~3 min)
    .venv/bin/python benchmarks/serve_load.py --model exports/v1 --workers 2 --batch-window-ms 0   # unbatched
    .venv/bin/python benchmarks/serve_load.py --model exports/v1 --levels "" --workers 2 --soak-seconds 600 \
        --soak-clients 32 --reload-every 30 --rss-every 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
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


def scrape(port: int, workers: int, tries: int = 50) -> dict[int, str]:
    """pid -> /metrics text of each worker, over fresh connections until every worker answered (bounded)."""
    texts: dict[int, str] = {}
    for _ in range(tries):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        found = re.search(r'unitarget_model_info\{pid="(\d+)"', text)
        if found:
            texts[int(found.group(1))] = text
        if len(texts) >= workers:
            break
    return texts


def batch_counts(texts: dict[int, str]) -> tuple[float, float, dict[str, float]]:
    """(ONNX Runtime calls, requests scored in them, cumulative bucket counts) summed over the workers."""
    calls = scored = 0.0
    buckets: Counter = Counter()
    pattern = re.compile(r'^unitarget_batch_requests_(count|sum|bucket)(?:\{le="([^"]+)"\})? (\S+)$', re.M)
    for text in texts.values():
        for name, le, value in pattern.findall(text):
            if name == "count":
                calls += float(value)
            elif name == "sum":
                scored += float(value)
            else:
                buckets[le] += float(value)
    return calls, scored, dict(buckets)


def batch_report(before: tuple, after: tuple) -> dict:
    """Requests per ONNX Runtime call during a level: mean, and the share of calls in each bucket."""
    calls, scored = after[0] - before[0], after[1] - before[1]
    cumulative = {le: after[2].get(le, 0) - before[2].get(le, 0) for le in after[2]}
    shares, below = {}, 0.0
    for le, count in sorted(cumulative.items(), key=lambda kv: float(kv[0])):
        if count > below and calls:
            shares[f"<={le}"] = round((count - below) / calls, 3)
        below = count
    return {"batches": int(calls), "requests_per_batch": round(scored / calls, 2) if calls else None,
            "batch_sizes": shares}


def summary(latencies: list[float], statuses: Counter, wall: float) -> dict:
    """Latency percentiles, throughput and errors of one run of clients."""
    ms = np.array(latencies or [float("nan")]) * 1000
    return {"requests": len(latencies), "seconds": round(wall, 2), "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2),
            "errors": sum(n for s, n in statuses.items() if s != 200),
            "statuses": {str(k): v for k, v in statuses.items()}}


async def level(port: int, requests: list[bytes], clients: int, total: int, seconds: float,
                workers: int = 1) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    quota = [total]
    before = batch_counts(scrape(port, workers))
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(port, requests, started + seconds, quota, latencies, statuses)
                           for _ in range(clients)))
    wall = time.perf_counter() - started
    return {"clients": clients, **summary(latencies, statuses, wall),
            "client_cpu_share": round((time.process_time() - cpu) / wall, 2),
            **batch_report(before, batch_counts(scrape(port, workers)))}


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (``VmRSS`` in /proc), None where it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return round(int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) / 1024, 1)


def reload_to(port: int, version: str) -> tuple[int, float]:
    """POST /v1/reload; (status, seconds)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/reload", method="POST",
                                     data=json.dumps({"version": version}).encode(),
                                     headers={"content-type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, time.perf_counter() - started
    except urllib.error.HTTPError as err:
        return err.code, time.perf_counter() - started


async def soak(port: int, requests: list[bytes], clients: int, seconds: float, reload_every: float,
               versions: tuple[str, str], workers: int, rss_every: float) -> dict:
    """Clients for ``seconds`` while the version alternates every ``reload_every`` seconds; each worker's RSS every
    ``rss_every`` seconds (``rss_series``: [seconds since the start, MiB per worker]) and when each reload ended."""
    pids = sorted(scrape(port, workers))
    latencies: list[float] = []
    statuses: Counter = Counter()
    reloads: list[tuple[int, float, float]] = []  # (status, seconds it took, when it ended)
    series: list[list] = []
    started = time.perf_counter()
    stop_at = started + seconds

    async def reloader() -> None:
        turn = 1
        while reload_every > 0 and time.perf_counter() + reload_every < stop_at:
            await asyncio.sleep(reload_every)
            status, took = await asyncio.to_thread(reload_to, port, versions[turn % 2])
            reloads.append((status, took, round(time.perf_counter() - started, 1)))
            turn += 1

    async def sampler() -> None:
        while True:
            series.append([round(time.perf_counter() - started, 1), [rss_mb(pid) for pid in pids]])
            if time.perf_counter() + rss_every > stop_at:
                return
            await asyncio.sleep(rss_every)

    await asyncio.gather(reloader(), sampler(), *(client(port, requests, stop_at, [1 << 62], latencies, statuses)
                                                  for _ in range(clients)))
    wall = time.perf_counter() - started
    series.append([round(wall, 1), [rss_mb(pid) for pid in pids]])
    return {"clients": clients, **summary(latencies, statuses, wall),
            "reloads": len(reloads), "reloads_failed": sum(1 for status, _, _ in reloads if status != 200),
            "reload_max_s": round(max((took for _, took, _ in reloads), default=0.0), 2),
            "reloaded_at_s": [at for _, _, at in reloads], "workers": pids, "rss_series": series,
            "rss_mb": {str(pid): {"start": series[0][1][k], "end": series[-1][1][k]} for k, pid in enumerate(pids)}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "unitarget.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(args.workers), "--threads", str(args.threads),
               "--batch-window-ms", str(args.batch_window_ms), "--batch-max-rows", str(args.batch_max_rows)]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if len(scrape(port, args.workers, tries=args.workers * 20)) >= args.workers:  # every worker is up
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready within 120 s")


def serving_copy(model: Path, work: Path) -> Path:
    """``model`` copied into a fresh models directory as v1, with a second version v2 (same files) for the soak."""
    models = work / "serving-models"
    shutil.copytree(model, models / "v1")
    shutil.copytree(model, models / "v2")
    return models / "v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="export directory (default: build one)")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--levels", default="1,8,32,64", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=3_000, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per level at most")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--batch-window-ms", type=float, default=1.0, help="server's batch window (0: no batching)")
    parser.add_argument("--batch-max-rows", type=int, default=4096, help="server's rows per batched call")
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="also run a soak this long (0: none)")
    parser.add_argument("--soak-clients", type=int, default=8)
    parser.add_argument("--reload-every", type=float, default=30.0, help="soak: seconds between reloads (0: none)")
    parser.add_argument("--rss-every", type=float, default=5.0, help="soak: seconds between RSS samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        model = serving_copy(args.model or build_model(Path(work)), Path(work))
        port = free_port()
        bodies = [http_request(port, b) for b in payloads(model, args.candidates, 32)]
        server = start_server(model, port, args)
        try:
            asyncio.run(level(port, bodies, 1, 100, 30, args.workers))  # warm-up, not reported
            results = [asyncio.run(level(port, bodies, int(c), args.requests, args.seconds, args.workers))
                       for c in args.levels.split(",") if c]
            soaked = asyncio.run(soak(port, bodies, args.soak_clients, args.soak_seconds, args.reload_every,
                                      ("v1", "v2"), args.workers, args.rss_every)) if args.soak_seconds > 0 else None
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    report(args, len(bodies[0]), results, soaked)


def report(args: argparse.Namespace, body_bytes: int, results: list[dict], soaked: dict | None) -> None:
    """The results as Markdown tables (and JSON with ``--json``)."""
    print(f"{args.candidates} candidates per request, {body_bytes:,} bytes; workers={args.workers}, "
          f"threads={args.threads}, batch window={args.batch_window_ms} ms, max rows={args.batch_max_rows}, "
          f"cpus={os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print("| clients | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | requests/batch | client CPU |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['clients']} | {r['requests']} | {r['rps']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} "
              f"| {r['max_ms']} | {r['errors']} | {r['requests_per_batch']} | {r['client_cpu_share']:.0%} |")
    for r in results:
        print(f"batch sizes at {r['clients']} clients ({r['batches']} calls): {r['batch_sizes']}")
    if soaked:
        print(f"soak: {soaked['clients']} clients, {soaked['seconds']} s, {soaked['requests']} requests, "
              f"{soaked['rps']} req/s, p50 {soaked['p50_ms']} ms, p99 {soaked['p99_ms']} ms, max {soaked['max_ms']} "
              f"ms, errors {soaked['errors']}; reloads {soaked['reloads']} ({soaked['reloads_failed']} failed, "
              f"slowest {soaked['reload_max_s']} s, ended at {soaked['reloaded_at_s']} s)")
        print(f"RSS MiB of workers {soaked['workers']} every {args.rss_every} s (seconds since the start):")
        for at, sizes in soaked["rss_series"]:
            print(f"  {at:7.1f}  " + "  ".join(f"{size:7.1f}" if size is not None else "   gone" for size in sizes))
    if args.json:
        args.json.write_text(json.dumps({"levels": results, "soak": soaked}, indent=2) + "\n")


if __name__ == "__main__":
    main()
