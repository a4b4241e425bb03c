"""Data-parallel runs for the tests: ranks started with ``torch.multiprocessing`` (spawn), each training through
``pipeline.train`` with the context ``from_env`` builds from the variables torchrun would set."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from tests.helpers import StopAt

RANK_FILE = "rank{}.pt"


def free_port() -> int:
    """A port nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Job:
    """One training of a spawned run: ``log`` into ``out``, its results under ``name`` (none when ``stop_at``)."""

    name: str
    log: str
    out: str
    config: dict[str, Any]
    resume: bool = False
    stop_at: tuple[int, int] | None = None


def train_rank(rank: int, world: int, port: int, jobs: list[Job], results: str) -> None:
    """One rank: run the ``jobs`` one after the other (the imports are paid once) and save each one's final
    weights, buffers and history in ``results/<name>/``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from unitarget.config import config_from_mapping
    from unitarget.pipeline import train
    from unitarget.training.distributed import from_env
    from unitarget.training.hooks import SilentHooks

    context = None
    for job in jobs:  # one process group for all (from_env keeps a running one): destroyed after the last job
        config = config_from_mapping(job.config, job.name)
        hooks = SilentHooks() if job.stop_at is None else StopAt(*job.stop_at)
        context = from_env(config)
        try:
            trained = train(job.log, job.out, config, resume=job.resume, hooks=hooks, distributed=context)
        except KeyboardInterrupt:
            continue
        folder = Path(results) / job.name
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"weights": trained.model.state_dict(), "history": trained.record.history},
                   folder / RANK_FILE.format(rank))
    if context is not None:
        context.close()


def run_ranks(world: int, jobs: list[Job], results: Path, *, timeout: float = 180) -> dict[str, list[dict]]:
    """``world`` spawned ranks running ``jobs``; each job's results per rank (stopped jobs have none). A rank that
    fails, or a run that outlives ``timeout``, fails the test instead of hanging it."""
    context = mp.start_processes(train_rank, args=(world, free_port(), jobs, str(results)), nprocs=world,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world} ranks did not finish within {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return {job.name: [torch.load(results / job.name / RANK_FILE.format(r), weights_only=False)
                       for r in range(world)] for job in jobs if job.stop_at is None}


def hang_rank(rank: int, world: int, port: int, timeout_minutes: float, hang_s: float) -> None:
    """Rank 1 stops answering (hangs) for ``hang_s``; rank 0 waits in a broadcast. Rank 0 exits 3 when its
    collective fails; its seconds waited are printed."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from unitarget.config import Config, merge
    from unitarget.training.distributed import from_env

    context = from_env(merge(Config(), {"train": {"ddp_timeout_minutes": timeout_minutes}}))
    started = time.monotonic()
    if rank == 1:
        time.sleep(hang_s)
        os._exit(0)
    try:
        context.broadcast(1.0)
    except RuntimeError:
        print(f"rank 0 gave up after {time.monotonic() - started:.1f} s", flush=True)
        os._exit(3)


def run_hang(timeout_minutes: float, hang_s: float) -> list[int | None]:
    """``hang_rank`` on 2 spawned ranks; their exit codes (None: still running after ``hang_s`` + 60 s)."""
    context = mp.start_processes(hang_rank, args=(2, free_port(), timeout_minutes, hang_s), nprocs=2, join=False,
                                 start_method="spawn")
    for process in context.processes:
        process.join(hang_s + 60)
    codes = [process.exitcode for process in context.processes]
    for process in context.processes:
        if process.is_alive():
            process.kill()
    return codes
