"""What the training loop iterates: the mini-batches of an epoch, wherever the rows live.

The loop asks a ``BatchStream`` for epoch ``e`` from step ``k`` on and gets ``Batch`` objects; it
does not know whether they were gathered from one encoded ``Batch`` in memory (``SampledBatches``:
a sampler's indices into it) or read from an on-disk cache of encoded shards
(``training.windows``). A stream's batches are a function of (seed, epoch), so a resumed run replays
the epoch and skips the ``k`` batches done before its checkpoint without recomputing them.
``TrainingRows`` is what a training setup is built on: base rates for the fresh heads, and the
stream of batches the configuration's sampling asks for. With ``sampling.mode = "reweight"`` that
stream is a natural pass wrapped in ``WeightedBatches``, which gives each row its source's loss
weight (``source_weights``), the same on both paths.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
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

    def batches(self, config: Config) -> BatchStream:
        """Source-balanced batches (``sampling.ratios``) when ``sampling.balanced`` and the rows hold at least two
        sources; the natural mix otherwise (one source has nothing to balance). ``sampling.mode = "reweight"``
        balances a natural pass (each row once an epoch) by loss weights instead of resampling."""
        source = self.rows.targets.source
        if config.sampling.mode == "reweight" and balances(config, set(torch.unique(source).tolist())):
            natural = NaturalSampler(len(source), config.train.batch_size, config.train.seed)
            rows = dict(enumerate(torch.bincount(source, minlength=len(config.sources)).tolist()))
            return WeightedBatches(SampledBatches(self.rows, natural), source_weights(config, rows))
        return SampledBatches(self.rows, make_sampler(config, self.rows.targets))


def balances(config: Config, present: set[int]) -> bool:
    """Whether ``config``'s source balancing applies to rows of the ``present`` sources: ``sampling.balanced``
    and at least two of them (one source has nothing to balance). Otherwise either mode is the natural mix,
    unweighted."""
    return config.sampling.balanced and len(present) >= 2


def make_sampler(config: Config, targets: Targets) -> NaturalSampler | SourceBalancedSampler:
    """The sampler ``config`` asks for over rows with these targets (see ``InMemoryRows.batches``)."""
    size, seed = config.train.batch_size, config.train.seed
    if not balances(config, set(torch.unique(targets.source).tolist())):
        return NaturalSampler(len(targets), size, seed)
    return SourceBalancedSampler(targets.source, size, source_shares(config), seed)


def source_shares(config: Config) -> dict[int, float]:
    """``sampling.ratios`` keyed by source index (``Config.sources`` order)."""
    return {config.sources.index(s): w for s, w in config.sampling.ratios.items()}


def source_weights(config: Config, rows: Mapping[int, int]) -> dict[int, float]:
    """Each source's loss weight for ``sampling.mode = "reweight"``, from its ``rows`` in the natural pass:
    w_s = c_s / p_s, c_s its ratio renormalised over the sources with rows and a positive ratio (0 for the others),
    p_s = n_s / N its natural share. A source's expected share of a batch's summed weight is then c_s, the share
    resampled batches give it (the paper's gradients at comparable scales), and the mean weight over the rows is
    Σ_s p_s w_s = Σ_s c_s = 1."""
    shares = {s: w for s, w in source_shares(config).items() if w > 0 and rows.get(s, 0) > 0}
    if not shares:
        raise ValueError("no source with a positive share in sampling.ratios has training rows to weight")
    total_share, total_rows = sum(shares.values()), sum(rows.values())
    return {s: shares.get(s, 0.0) / total_share * total_rows / n for s, n in rows.items() if n > 0}


class WeightedBatches:
    """``stream``'s batches with ``Targets.weight`` set to each row's source weight (``source_weights``): the batches
    themselves, and so the resumed and DDP-sliced ones, are the stream's."""

    def __init__(self, stream: BatchStream, weights: Mapping[int, float]) -> None:
        self.stream = stream
        self.weights = torch.zeros(max(weights) + 1)
        for s, w in weights.items():
            self.weights[s] = w

    def __len__(self) -> int:
        return len(self.stream)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The stream's batches of ``epoch`` from ``start`` on, each row weighted by its source."""
        for batch in self.stream.epoch(epoch, start):
            weight = self.weights.index_select(0, batch.targets.source)
            yield Batch(batch.features, replace(batch.targets, weight=weight))


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
