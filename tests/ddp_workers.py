"""Data-parallel runs for the tests: ranks started with ``torch.multiprocessing`` (spawn), each training through
``pipeline.train`` with the context ``from_env`` builds from the variables torchrun would set."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

RANK_FILE = "rank{}.pt"


def free_port() -> int:
    """A port nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _StopAt:
    """Ctrl-C right after optimiser step ``step`` of epoch ``epoch``, on every rank at once."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step(self, epoch: int, step: int, steps: int, loss: float, examples_per_s: float) -> None:
        if (epoch, step) == (self.epoch, self.step):
            raise KeyboardInterrupt

    def on_epoch_end(self, record: dict) -> None:
        pass


def train_rank(rank: int, world: int, port: int, log: str, out: str, config: dict[str, Any], results: str,
               resume: bool, stop_at: tuple[int, int] | None) -> None:
    """One rank: train ``log`` into ``out`` and save the final weights, buffers and history in ``results``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from unitarget.config import config_from_mapping
    from unitarget.pipeline import train
    from unitarget.training.distributed import from_env
    from unitarget.training.loop import SilentHooks

    parsed = config_from_mapping(config, "test")
    hooks = SilentHooks() if stop_at is None else _StopAt(*stop_at)
    with from_env(parsed) as context:
        try:
            trained = train(log, out, parsed, resume=resume, hooks=hooks, distributed=context)
        except KeyboardInterrupt:
            return
        context.barrier()
    torch.save({"weights": trained.model.state_dict(), "history": trained.record.history},
               Path(results) / RANK_FILE.format(rank))


def run_ranks(world: int, log: Path, out: Path, config: dict[str, Any], results: Path, *, resume: bool = False,
              stop_at: tuple[int, int] | None = None, timeout: float = 120) -> list[dict[str, Any]]:
    """``world`` ranks of one training; each rank's saved results (none for a stopped run). A rank that fails, or a
    run that outlives ``timeout``, fails the test instead of hanging it."""
    results.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(train_rank, args=(world, free_port(), str(log), str(out), config, str(results),
                                                   resume, stop_at),
                                 nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world} ranks did not finish within {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    if stop_at is not None:
        return []
    return [torch.load(results / RANK_FILE.format(r), weights_only=False) for r in range(world)]
