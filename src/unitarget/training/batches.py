"""What the training loop iterates: the mini-batches of an epoch, wherever the rows live.

The loop asks a ``BatchStream`` for epoch ``e`` from step ``k`` on and gets ``Batch`` objects; it
does not know whether they were gathered from one encoded ``Batch`` in memory (``SampledBatches``:
a sampler's indices into it) or read from an on-disk cache of encoded shards
(``training.windows``). A stream's batches are a function of (seed, epoch), so a resumed run replays
the epoch and skips the ``k`` batches done before its checkpoint without recomputing them.
``TrainingRows`` is what a training setup is built on: base rates for the fresh heads, and the
stream of batches the configuration's sampling asks for.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from unitarget.data.batch import Batch, Features, Targets, concat
from unitarget.data.cache import Shard
from unitarget.training.sampling import NaturalSampler, Sampler, SourceBalancedSampler
from unitarget.training.tasks import TaskSet

if TYPE_CHECKING:
    from unitarget.config import Config


class BatchStream(Protocol):
    """The mini-batches of each epoch: as many each epoch, the same for the same (seed, epoch)."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch ``start`` on (a resumed run skips those already done)."""
        ...


class TrainingRows(Protocol):
    """Encoded training rows, in memory or on disk: what ``training.setup.build_setup`` needs of them."""

    def rate_sums(self, tasks: TaskSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) positives and (T,) rows that may update each task, summed over all the rows."""
        ...

    def batches(self, config: Config) -> BatchStream:
        """The batches ``config``'s sampling and batch size ask for."""
        ...


def base_rates(rows: TrainingRows, tasks: TaskSet) -> list[float]:
    """Positive rate of each task over the rows allowed to update it (a fresh head starts there)."""
    positives, weights = rows.rate_sums(tasks)
    return (positives / weights.clamp(min=1)).tolist()


class SampledBatches:
    """Batches gathered from one encoded ``Batch`` in memory by a sampler's index tensors."""

    def __init__(self, rows: Batch, sampler: Sampler) -> None:
        self.rows, self.sampler = rows, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The sampler's batches of ``epoch`` from ``start`` on; skipped ones draw indices only, gather nothing."""
        for index in itertools.islice(self.sampler.epoch(epoch), start, None):
            yield self.rows.take(index)


class InMemoryRows:
    """Training rows encoded into one ``Batch``: the path of logs that fit in memory, and of the studies."""

    def __init__(self, rows: Batch) -> None:
        self.rows = rows

    def rate_sums(self, tasks: TaskSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed over ``rows`` in one pass."""
        return tasks.rate_sums(self.rows.targets)

    def batches(self, config: Config) -> SampledBatches:
        """Source-balanced batches (``sampling.ratios``) when ``sampling.balanced`` and the rows hold at least two
        sources; the natural mix otherwise (one source has nothing to balance)."""
        return SampledBatches(self.rows, make_sampler(config, self.rows.targets))


def make_sampler(config: Config, targets: Targets) -> NaturalSampler | SourceBalancedSampler:
    """The sampler ``config`` asks for over rows with these targets (see ``InMemoryRows.batches``)."""
    size, seed = config.train.batch_size, config.train.seed
    present = set(torch.unique(targets.source).tolist())
    if not config.sampling.balanced or len(present) < 2:
        return NaturalSampler(len(targets), size, seed)
    return SourceBalancedSampler(targets.source, size, source_shares(config), seed)


def source_shares(config: Config) -> dict[int, float]:
    """``sampling.ratios`` keyed by source index (``Config.sources`` order)."""
    return {config.sources.index(s): w for s, w in config.sampling.ratios.items()}


class FirstBatches:
    """``stream`` cut to its first ``steps`` batches per epoch: a short run of the real loop (benchmarks)."""

    def __init__(self, stream: BatchStream, steps: int) -> None:
        self.stream, self.steps = stream, min(steps, len(stream))

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The first ``steps`` batches of ``stream``'s epoch, from ``start`` on."""
        return itertools.islice(self.stream.epoch(epoch, start), max(0, self.steps - start))


@dataclass(frozen=True)
class ValidationRows:
    """The rows model selection scores: features read slice by slice (from memory, or from the cache's validation
    shard so a large window is never held), targets whole (a few dozen bytes a row)."""

    features: Callable[[], Iterator[Features]]
    targets: Targets

    @classmethod
    def of_batch(cls, batch: Batch) -> "ValidationRows":
        """Rows encoded in memory."""
        return cls(lambda: iter([batch.features]), batch.targets)

    @classmethod
    def of_shard(cls, shard: Shard, rows: int = 1 << 18) -> "ValidationRows":
        """The cache's validation shard, ``rows`` at a time."""
        return cls(lambda: shard.features(rows), concat(list(shard.targets())))
