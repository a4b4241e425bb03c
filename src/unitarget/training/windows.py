"""Training batches read from the encoded cache through shuffle windows, in bounded memory.

Each source's fit rows are one shard, seen as blocks of ``stream.block_rows`` consecutive rows
(log order). A pass over a source draws its blocks in a random order and reads them
``stream.shuffle_blocks`` at a time into that source's *window*, whose rows are shuffled and then
consumed in order; a source that runs out inside an epoch starts another pass with a fresh order,
as the in-memory source-balanced sampler cycles a small source. How many rows each batch takes from
each source is the stream's *plan*: a fixed number (``FixedCounts``: ``sampling.ratios`` when
balanced, otherwise each source's share of the fit rows, the natural mix stratified by source), or
with ``sampling.mode = "reweight"`` the counts of one uniformly shuffled pass over all the fit rows
(``NaturalCounts``: each row at most once an epoch, the sources interleaved in proportion; the rows
are then weighted, ``training.batches.WeightedBatches``). Every draw is seeded by (seed, epoch,
source, pass, window) and the plan by (seed, epoch), so an epoch's batches are a function of
(seed, epoch), and a resumed run seeks straight to batch k, reading only the window it falls in.

Memory: per source, one window of ``block_rows × shuffle_blocks`` encoded rows (twice while it is
being shuffled), whatever the log's length. Rows shuffle across the whole log only at the block
level: two rows in the same block of a pass always share a window.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from unitarget.data.batch import Batch
from unitarget.data.cache import EncodedCache, Shard, to_batch
from unitarget.training.batches import WeightedBatches, balances, source_shares, source_weights
from unitarget.training.sampling import apportion, batches_per_epoch
from unitarget.training.tasks import TaskSet

if TYPE_CHECKING:
    from unitarget.config import Config

#: Mixed into the seed of a natural pass's plan, apart from the (seed, epoch, source, ...) seeds of the windows.
_PLAN_STREAM = 0x5EED_91A7


class _SourceWindows:
    """One source's rows in an epoch: passes of shuffled windows, read as they are needed."""

    def __init__(self, shard: Shard, source: int, block_rows: int, window_blocks: int, seed: int, epoch: int) -> None:
        self.shard, self.block_rows, self.window_blocks = shard, block_rows, window_blocks
        self.seeds = (seed, epoch, source)
        self.n_blocks = -(-shard.rows // block_rows)
        self.pass_, self.window, self.offset = 0, -1, 0
        self.rows: dict[str, np.ndarray] = {}
        self._plan: tuple[int, list[np.ndarray]] = (-1, [])

    def _windows(self, pass_: int) -> list[np.ndarray]:
        """The blocks of each window of pass ``pass_`` (drawn once per pass)."""
        if self._plan[0] != pass_:
            order = np.random.default_rng([*self.seeds, pass_]).permutation(self.n_blocks)
            self._plan = (pass_, [np.sort(order[i:i + self.window_blocks])
                                  for i in range(0, self.n_blocks, self.window_blocks)])
        return self._plan[1]

    def _block_size(self, block: int) -> int:
        return min(self.block_rows, self.shard.rows - block * self.block_rows)

    def _load(self, pass_: int, window: int) -> None:
        """Read window ``window`` of pass ``pass_`` and shuffle its rows."""
        blocks = self._windows(pass_)[window]
        parts = [self.shard.read(b * self.block_rows, (b + 1) * self.block_rows) for b in blocks]
        self.rows = {}  # the previous window is freed before the next one is shuffled
        joined = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        del parts
        order = np.random.default_rng([*self.seeds, pass_, window]).permutation(len(joined["ids"]))
        self.rows = {name: array[order] for name, array in joined.items()}
        self.pass_, self.window, self.offset = pass_, window, 0

    def seek(self, consumed: int) -> None:
        """Stand where the epoch's stream is after ``consumed`` rows of this source."""
        pass_, within = divmod(consumed, self.shard.rows)
        for window, blocks in enumerate(self._windows(pass_)):
            size = sum(self._block_size(int(b)) for b in blocks)
            if within < size:
                self._load(pass_, window)
                self.offset = within
                return
            within -= size

    def take(self, n: int) -> dict[str, np.ndarray]:
        """The next ``n`` rows, moving to the next window (or pass) when this one runs out."""
        pieces = []
        while n > 0:
            if self.offset == len(self.rows["ids"]):
                last = self.window + 1 == len(self._windows(self.pass_))
                self._load(self.pass_ + 1 if last else self.pass_, 0 if last else self.window + 1)
            step = min(n, len(self.rows["ids"]) - self.offset)
            pieces.append({name: a[self.offset:self.offset + step] for name, a in self.rows.items()})
            self.offset += step
            n -= step
        if not pieces:  # a natural pass's batch may hold no row of this source
            return {name: a[:0] for name, a in self.rows.items()}
        return pieces[0] if len(pieces) == 1 else {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


class Plan(Protocol):
    """How many rows each batch of an epoch takes from each source: its columns follow the order of the sources it was
    built with, which ``WindowedBatches`` is given its shards in."""

    batches: int

    def per_batch(self, epoch: int) -> np.ndarray:
        """(batches, S) int64: rows of each source (columns in the shards' order) in each batch of ``epoch``."""
        ...


class FixedCounts:
    """``counts[s]`` rows of source ``s`` in every batch."""

    def __init__(self, counts: Mapping[int, int], batches: int) -> None:
        self.counts, self.batches = dict(counts), batches

    def per_batch(self, epoch: int) -> np.ndarray:
        """The same counts for every batch."""
        return np.tile(np.array(list(self.counts.values()), dtype=np.int64), (self.batches, 1))


class NaturalCounts:
    """The source counts of each batch of one uniformly shuffled pass over all of ``rows[s]`` rows of each source:
    batch after batch, a multivariate hypergeometric draw of ``batch_size`` rows from those not yet drawn, seeded by
    (seed, epoch). No source gives more rows than it has, so no row is read twice in an epoch."""

    def __init__(self, rows: Mapping[int, int], batch_size: int, batches: int, seed: int) -> None:
        self.rows, self.batch_size, self.batches, self.seed = dict(rows), batch_size, batches, seed
        self._drawn: tuple[int, np.ndarray] = (-1, np.empty(0))

    def per_batch(self, epoch: int) -> np.ndarray:
        """Drawn once per epoch (a resumed run redraws the same)."""
        if self._drawn[0] != epoch:
            generator = np.random.default_rng([self.seed, epoch, _PLAN_STREAM])
            left = np.array(list(self.rows.values()), dtype=np.int64)
            counts = np.empty((self.batches, len(left)), dtype=np.int64)
            for b in range(self.batches):
                counts[b] = generator.multivariate_hypergeometric(left, self.batch_size)
                left -= counts[b]
            self._drawn = (epoch, counts)
        return self._drawn[1]


class WindowedBatches:
    """A ``BatchStream`` over the cache's fit shards: ``plan`` says how many rows of each source every batch takes."""

    def __init__(self, shards: dict[int, Shard], plan: Plan, *, block_rows: int, window_blocks: int,
                 seed: int) -> None:
        self.shards, self.plan = shards, plan
        self.block_rows, self.window_blocks, self.seed = block_rows, window_blocks, seed

    def __len__(self) -> int:
        return self.plan.batches

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from ``start`` on; rows grouped by source within a batch."""
        counts = self.plan.per_batch(epoch)
        done = counts[:start].sum(0)
        windows = {}
        for k, (s, shard) in enumerate(self.shards.items()):
            windows[s] = _SourceWindows(shard, s, self.block_rows, self.window_blocks, self.seed, epoch)
            windows[s].seek(int(done[k]))
        for b in range(start, self.plan.batches):
            parts = [windows[s].take(int(counts[b, k])) for k, s in enumerate(self.shards)]
            yield to_batch({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


class CachedRows:
    """``TrainingRows`` in the encoded cache: what a training setup is built on when the log is read from disk."""

    def __init__(self, cache: EncodedCache, sources: tuple[str, ...]) -> None:
        self.cache = cache
        self.shards = {sources.index(name): shard for name, shard in cache.train.items() if shard.rows > 0}

    def rate_sums(self, tasks: TaskSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed over every fit shard, a million rows' targets at a time."""
        positives, weights = torch.zeros(len(tasks)), torch.zeros(len(tasks))
        for shard in self.shards.values():
            for targets in shard.targets():
                p, w = tasks.rate_sums(targets)
                positives, weights = positives + p, weights + w
        return positives, weights

    def batches(self, config: Config) -> WindowedBatches | WeightedBatches:
        """Source-balanced rows per batch (``sampling.ratios``) when ``sampling.balanced`` and at least two sources
        have rows; each source's share of the fit rows otherwise. ``sampling.mode = "reweight"``: one natural pass
        over every source's rows (``NaturalCounts``), each row weighted by its source (``source_weights``)."""
        rows = {s: shard.rows for s, shard in self.shards.items()}
        size, batches = config.train.batch_size, batches_per_epoch(sum(rows.values()), config.train.batch_size)
        windows = {"block_rows": config.stream.block_rows, "window_blocks": config.stream.shuffle_blocks,
                   "seed": config.train.seed}
        if config.sampling.mode == "reweight" and balances(config, {s for s, n in rows.items() if n > 0}):
            natural = NaturalCounts(rows, min(size, sum(rows.values())), batches, config.train.seed)
            return WeightedBatches(WindowedBatches(self.shards, natural, **windows), source_weights(config, rows))
        shares = {s: w for s, w in source_shares(config).items() if w > 0 and s in rows}
        if not config.sampling.balanced or len(shares) < 2:
            shares = {s: n / sum(rows.values()) for s, n in rows.items()}
        total = sum(shares.values())
        counts = apportion(size, {s: w / total for s, w in shares.items()})
        return WindowedBatches({s: self.shards[s] for s in counts}, FixedCounts(counts, batches), **windows)
