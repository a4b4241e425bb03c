"""Which rows form each mini-batch: the natural mix, or source-balanced batches (paper, 3.3).

Samplers yield index tensors and know nothing of models, so they are tested on their own. Each
epoch's order comes from a generator seeded with (seed, epoch): a resumed run replays exactly the
batches the interrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import torch

_EPOCH_STRIDE = 1_000_003


class Sampler(Protocol):
    """Which rows form each mini-batch: batches per epoch, and the epoch's index tensors, the same for the same
    epoch and drawn from no shared generator (so a resumed run replays them, and skips the ones done before a
    mid-epoch checkpoint)."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        """The row indices of each batch of ``epoch``."""
        ...


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * _EPOCH_STRIDE + epoch)


def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """Whole batches only (batch norm needs more than one row); at least one."""
    return max(1, n_rows // batch_size)


class NaturalSampler:
    """Uniformly shuffled rows: each source appears in proportion to its volume."""

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed

    def __len__(self) -> int:
        return batches_per_epoch(self.n_rows, self.batch_size)

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        """The batches of epoch ``epoch``: consecutive slices of one permutation seeded by (seed, epoch), whole batches
        only (the remainder is dropped)."""
        order = torch.randperm(self.n_rows, generator=_generator(self.seed, epoch))
        size = min(self.batch_size, self.n_rows)
        for b in range(len(self)):
            yield order[b * size : (b + 1) * size]


class SourceBalancedSampler:
    """Every batch holds round(share_s · B) rows of each source s, whatever the sources' volumes.

    An epoch has as many batches as the natural mix would; a source with fewer rows than its share
    needs is cycled through (fresh permutation each pass), a larger one is subsampled.
    """

    def __init__(
        self, source: torch.Tensor, batch_size: int, shares: Mapping[int, float], seed: int
    ) -> None:
        present = {s: w for s, w in shares.items() if w > 0 and bool((source == s).any())}
        if not present:
            raise ValueError("no source with a positive share has rows to sample")
        total = sum(present.values())
        self.rows = {s: torch.nonzero(source == s).squeeze(1) for s in present}
        self.counts = apportion(batch_size, {s: w / total for s, w in present.items()})
        self.n_rows, self.batch_size, self.seed = len(source), batch_size, seed

    def __len__(self) -> int:
        return batches_per_epoch(self.n_rows, self.batch_size)

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        """The batches of epoch ``epoch``: each source's fixed row count per batch, drawn from that source's rows cycled
        through fresh permutations seeded by (seed, epoch); rows grouped by source in a batch."""
        generator = _generator(self.seed, epoch)
        n_batches = len(self)
        streams = {
            s: _cycled_permutation(rows, self.counts[s] * n_batches, generator).view(n_batches, -1)
            for s, rows in self.rows.items()
        }
        for b in range(n_batches):
            yield torch.cat([stream[b] for stream in streams.values()])


def apportion(batch_size: int, shares: Mapping[int, float]) -> dict[int, int]:
    """Integer rows per source summing to ``batch_size`` (largest remainder), each at least 1."""
    exact = {s: share * batch_size for s, share in shares.items()}
    counts = {s: max(1, int(v)) for s, v in exact.items()}
    by_remainder = sorted(exact, key=lambda s: exact[s] - int(exact[s]), reverse=True)
    i = 0
    while sum(counts.values()) < batch_size:
        counts[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    return counts


def _cycled_permutation(rows: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    passes = -(-length // len(rows))
    order = torch.cat([rows[torch.randperm(len(rows), generator=generator)] for _ in range(passes)])
    return order[:length]
