"""Data-parallel training (``torchrun``, DistributedDataParallel): every rank trains the same model on its share of
each global batch.

The plan is global and the same on every rank: each rank builds the same ``BatchStream`` (same seed) and, of every
global batch of B rows, takes the strided slice ``rows[rank::world]`` (``RankSlice``). Batches are grouped by
source, so a strided slice keeps each rank's source mix close to the batch's. Each rank's task losses are divided by
its B/N rows and DDP averages the gradients over the ranks: the gradient is the 1 × B one up to float rounding,
exactly so when the model has no batch norm and no dropout. With batch norm each rank normalises over its own B/N
rows and the running statistics are rank 0's (DDP broadcasts the buffers before each forward); SyncBatchNorm needs
CUDA, and unitarget trains on CPU. Dropout masks are drawn per rank from a generator seeded with (seed, epoch, step,
rank), so a resumed run draws the masks the uninterrupted one would have.

Rank 0 validates, keeps the best weights, writes the checkpoints and publishes the run (``SharedStore``): the others
write nothing and receive what rank 0 decided or loaded (the validation score, the best weights at the end, the
checkpoint on ``--resume``), so every rank stops at the same epoch and ends with the same weights. The logged train
loss is the mean over the ranks (one scalar all-reduce per step).

``from_env`` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and starts the
process group (gloo on CPU, with ``train.ddp_timeout_minutes`` as its timeout, so a rank whose peers are gone stops
waiting); without torchrun, or with one process, it returns the single-process context, under which training is
exactly what it was without this module. docs/scaling.md has the commands and what was measured.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from unitarget.data.batch import Batch
from unitarget.errors import UnitargetError
from unitarget.training.balancing import GradNorm, PCGrad
from unitarget.training.batches import BatchStream

if TYPE_CHECKING:
    from unitarget.config import Config

#: A ``training.loop.TrainingStore`` (not imported: the loop imports this module).
TrainingStore = Any

_T = TypeVar("_T")
#: Balancers that take per-task gradients with ``torch.autograd.grad``: those gradients are each rank's own (DDP
#: all-reduces only what ``backward`` accumulates), and PCGrad then overwrites the averaged ones.
_PER_TASK_GRADIENTS = {"gradnorm": GradNorm, "pcgrad": PCGrad}
_SEED_STRIDE = 1_000_003


class DistributedError(UnitargetError):
    """A setting data-parallel training does not support, or an error rank 0 met and every rank reports."""


def check_supported(config: Config, world: int) -> None:
    """Refuse what data-parallel training over ``world`` ranks cannot do: a batch that does not split evenly, and
    the balancers whose per-task gradients would not be averaged over the ranks."""
    if config.train.batch_size % world:
        raise DistributedError(f"train.batch_size = {config.train.batch_size} does not split over {world} ranks: "
                               f"the global batch is cut into equal shares, so it must be a multiple of {world}")
    if config.loss.method in _PER_TASK_GRADIENTS:
        raise DistributedError(f"loss.method = {config.loss.method!r} is not supported in data-parallel training: it "
                               f"takes per-task gradients with torch.autograd.grad, which DDP does not average "
                               f"over the ranks; use static or uncertainty, or train on one process")


class RankSlice:
    """A rank's share of a ``BatchStream`` of global batches: rows ``rank::world`` of each (B/N rows of B)."""

    def __init__(self, stream: BatchStream, rank: int, world: int) -> None:
        self.stream, self.rank, self.world = stream, rank, world

    def __len__(self) -> int:
        return len(self.stream)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The stream's batches of ``epoch`` from ``start`` on, each cut to this rank's rows."""
        for batch in self.stream.epoch(epoch, start):
            if len(batch) % self.world:
                raise DistributedError(f"a batch of {len(batch)} rows does not split over {self.world} ranks "
                                       f"(train.batch_size must be a multiple of the number of ranks, and the "
                                       f"training rows at least one batch)")
            yield batch.take(torch.arange(self.rank, len(batch), self.world))


@dataclass
class DistributedContext:
    """Which rank this process is of how many, and the collectives the training loop uses; ``world == 1`` (the
    default) is the single process, whose every method is a no-op or the identity."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    _held: tuple[torch.Tensor, ...] = field(default=(), repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, writes and publishes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """More than one rank (a process group is running)."""
        return self.world > 1

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy the process group (nothing for a single process), once every rank has got here."""
        if self.parallel and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.parallel:
            dist.barrier()

    def broadcast(self, value: _T) -> _T:
        """Rank 0's ``value`` on every rank (any picklable object: a float, a flag, a state dict), as its pickle's
        length and bytes (what ``broadcast_object_list`` does, with the tensors kept: ``_keep``)."""
        if not self.parallel:
            return value
        payload = pickle.dumps(value) if self.is_main else b""
        size = torch.tensor([len(payload)], dtype=torch.int64)
        dist.broadcast(size, src=0)
        data = (torch.frombuffer(bytearray(payload), dtype=torch.uint8) if self.is_main
                else torch.empty(int(size.item()), dtype=torch.uint8))
        dist.broadcast(data, src=0)
        self._keep(size, data)
        return value if self.is_main else pickle.loads(data.numpy().tobytes())

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over the ranks (one all-reduce); a single process reads it."""
        if not self.parallel:
            return value.item()
        total = value.detach().reshape(1).double()
        dist.all_reduce(total)
        self._keep(total)
        return total.item() / self.world

    def _keep(self, *tensors: torch.Tensor) -> None:
        """Hold the tensors of the last collective until the next one. Gloo's worker thread drops its reference
        to a collective's tensors just after the caller has been told it finished; were that the last reference to
        a tensor made in Python, the thread would need the GIL to free it, and a rank exiting at that moment aborts
        in interpreter finalisation ("terminate called without an active exception": pytorch/pytorch#179291).
        Held here, Python frees them, long after the worker thread has let go."""
        self._held = tensors

    def from_main(self, compute: Callable[[], _T]) -> _T:
        """``compute()`` run by rank 0 only, its result broadcast; an error it raises is raised on every rank (a
        ``DistributedError`` naming it on the others), so no rank waits for a result that will not come."""
        if not self.parallel:
            return compute()
        if self.is_main:
            try:
                value = compute()
            except Exception as err:
                self.broadcast((False, f"{type(err).__name__}: {err}"))
                raise
            self.broadcast((True, value))
            return value
        return self._received(self.broadcast(None))

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first, then the others do: rank 0 can build a file (a cache) that the others then
        read. An error in rank 0's block is raised on every rank."""
        if not self.parallel:
            yield
        elif self.is_main:
            try:
                yield
            except Exception as err:
                self.broadcast((False, f"{type(err).__name__}: {err}"))
                raise
            self.broadcast((True, None))
        else:
            self._received(self.broadcast(None))
            yield

    @staticmethod
    def _received(outcome: tuple[bool, Any]) -> Any:
        ok, value = outcome
        if not ok:
            raise DistributedError(f"rank 0 failed, so this rank stops too: {value}")
        return value

    def batches(self, stream: BatchStream) -> BatchStream:
        """This rank's share of ``stream``'s global batches (the stream itself for a single process)."""
        return RankSlice(stream, self.rank, self.world) if self.parallel else stream

    def store(self, store: TrainingStore) -> TrainingStore:
        """``store`` as this rank uses it: itself for a single process, a ``SharedStore`` under DDP."""
        return SharedStore(store, self) if self.parallel else store

    def replica(self, model: nn.Module, balancer: nn.Module, seed: int) -> Replica:
        """What the loop runs each step through: the model (wrapped in DDP when parallel) and the per-step
        collectives."""
        if not self.parallel:
            return Replica(self, model, balancer, seed)
        for name, kind in _PER_TASK_GRADIENTS.items():
            if isinstance(balancer, kind):
                raise DistributedError(f"loss.method = {name!r} is not supported in data-parallel training (its "
                                       f"per-task gradients are not averaged over the ranks)")
        return Replica(self, _data_parallel(model), balancer, seed)


@dataclass
class Replica:
    """One rank's view of a training step: the forward module, its seeding, and the collectives around the
    backward. For a single process ``net`` is the model and nothing else happens."""

    context: DistributedContext
    net: nn.Module
    balancer: nn.Module
    seed: int

    def before_step(self, epoch: int, step: int) -> None:
        """Under DDP, seed torch's generator with (seed, epoch, step, rank): each rank draws its own dropout masks,
        and a resumed run the masks the uninterrupted one drew."""
        if self.context.parallel:
            mixed = ((self.seed * _SEED_STRIDE + epoch) * _SEED_STRIDE + step) * 4099 + self.context.rank
            torch.manual_seed(mixed % (2**63))

    def after_backward(self) -> None:
        """Average the balancer's own gradients (uncertainty's log-variances) over the ranks; DDP has averaged the
        model's."""
        if not self.context.parallel:
            return
        for param in self.balancer.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad.div_(self.context.world)

    def loss(self, loss: torch.Tensor) -> float:
        """The step's loss over the whole global batch: the mean of the ranks' (each over B/N rows)."""
        return self.context.mean(loss)

    def examples(self, rows: int) -> int:
        """The examples a step saw over all ranks, from this rank's ``rows``."""
        return rows * self.context.world


class SharedStore:
    """A ``TrainingStore`` under DDP: rank 0 writes into the store, the other ranks write nothing; what is loaded
    (the best weights, the checkpoint) is rank 0's, broadcast to every rank."""

    def __init__(self, store: TrainingStore, context: DistributedContext) -> None:
        self.inner, self.context = store, context

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        """Rank 0 keeps ``weights``; they are the same on every rank."""
        if self.context.is_main:
            self.inner.save_best(weights)

    def load_best(self) -> dict[str, torch.Tensor]:
        """Rank 0's best weights, on every rank."""
        return self.context.from_main(self.inner.load_best)

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """Rank 0 writes the checkpoint: weights, optimiser and schedule are the same on every rank."""
        if self.context.is_main:
            self.inner.save_checkpoint(payload)

    def load_checkpoint(self) -> dict[str, Any]:
        """Rank 0's checkpoint, on every rank (RNG state included)."""
        return self.context.from_main(self.inner.load_checkpoint)


def _data_parallel(model: nn.Module) -> nn.Module:
    """``model`` in DDP. A row-sparse table gradient (``optim.embedding_updates = "lazy"``) is all-reduced as a sparse
    tensor (gloo sums the rows of every rank) only if DDP expects it, which it reads from ``nn.Embedding.sparse``
    when it is built; the flag is set for that moment only (the model reads its tables through its own lookup)."""
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    sparse = bool(getattr(getattr(model, "embedder", None), "sparse_grad", False))
    before = [t.sparse for t in tables]
    for table in tables:
        table.sparse = table.sparse or sparse
    try:
        return nn.parallel.DistributedDataParallel(model)
    finally:
        for table, flag in zip(tables, before):
            table.sparse = flag


def backend_for(device: torch.device) -> str:
    """nccl for a model on CUDA, gloo otherwise (unitarget trains on CPU)."""
    return "nccl" if device.type == "cuda" and torch.cuda.is_available() else "gloo"


def from_env(config: Config, environ: Mapping[str, str] | None = None,
             device: torch.device = torch.device("cpu")) -> DistributedContext:
    """The context torchrun's environment describes, with its process group started; a single-process context
    when not launched by torchrun or with one process. ``config`` is checked for what DDP supports first."""
    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    check_supported(config, world)
    rank, local_rank = int(environ["RANK"]), int(environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), rank=rank, world_size=world,
                                timeout=timedelta(minutes=config.train.ddp_timeout_minutes))
    return DistributedContext(rank, world, local_rank)


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a torchrun worker (torchrun sets the rank variables)."""
    environ = os.environ if environ is None else environ
    return "RANK" in environ and "WORLD_SIZE" in environ


def launch(nproc: int, args: list[str]) -> int:
    """Run ``python -m unitarget ARGS`` on ``nproc`` local processes through torchrun's Python API
    (``torch.distributed.run``, ``--standalone``); the exit status: 0, or 1 when a worker failed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    try:
        run(get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "unitarget", *args]))
    except ChildFailedError:
        return 1
    return 0
