"""Several uvicorn worker processes on one port, each with its own ``SO_REUSEPORT`` socket.

uvicorn's own ``--workers`` shares one listening socket between the processes, and asyncio
accepts every pending connection in a loop when the socket turns readable: whichever worker
wakes first takes all the connections that arrived together. With a few long-lived keep-alive
connections (an ad server's connection pool) one worker ends up serving all of them while the
other idles, which halved throughput at 8 clients on 2 cores (docs/benchmarks.md). With a socket
per worker bound with ``SO_REUSEPORT`` the kernel spreads new connections over the workers.

The parent only supervises: a worker that dies is started again, and SIGINT or SIGTERM stops
every worker (uvicorn's graceful shutdown: requests in flight finish) before the parent exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("unitarget.serving")

#: Seconds between checks that every worker is alive, and a stopping worker's grace period.
CHECK_SECONDS = 0.5
STOP_SECONDS = 15.0


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT; accepted connections inherit TCP_NODELAY from it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(run: Callable[[socket.socket], None], host: str, port: int) -> None:
    run(listening_socket(host, port))


def supervise(run: Callable[[socket.socket], None], *, host: str, port: int, workers: int) -> None:
    """Run ``run(socket)`` in ``workers`` processes (``run`` must be picklable: a module-level
    function or a ``functools.partial`` of one) until SIGINT or SIGTERM."""
    context = multiprocessing.get_context("spawn")  # no forked copy of the parent's threads or torch
    listening_socket(host, port).close()  # a port held by another program fails here, in the parent
    stop = threading.Event()

    def start() -> Any:
        process = context.Process(target=_worker, args=(run, host, port), daemon=False)
        process.start()
        return process

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    try:
        while not stop.wait(CHECK_SECONDS):
            for i, process in enumerate(processes):
                if not process.is_alive():
                    logger.error("worker %s exited with code %s; starting another", process.pid, process.exitcode)
                    processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
