"""Impressions as index arrays, the types every stage of the synthetic world passes along.

:class:`Placements` says who saw what, where and when; :class:`SampledLog` adds what the logging
policy and the label draw produced. The outcome model (``labels``) reads placements, the log sampler
(``log``) makes them, the table builder (``table``) and the simulator (``unitarget.simulation``)
turn them into rows. They live here, below all of those, so that none of them has to import
another just for a type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from unitarget.synth import vocab


@dataclass(frozen=True)
class Placements:
    """Index arrays describing impressions, all of one length n (integers)."""

    user: np.ndarray  # user index
    show: np.ndarray  # show index
    source: np.ndarray  # 0 = ads, 1 = promotions (vocab.SOURCES)
    creative: np.ndarray  # creative index for ads; -1 for promotions
    surface: np.ndarray  # index into vocab.SURFACES
    device: np.ndarray  # index into vocab.DEVICES
    slot: np.ndarray  # index into vocab.SLOTS
    layout: np.ndarray  # index into vocab.LAYOUTS for promotions; -1 for ads
    hour: np.ndarray  # hour of day 0..23 (UTC)
    day: np.ndarray  # day index, 0 = WorldParams.start

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, np.asarray(getattr(self, f.name), dtype=np.int64).ravel())
        lengths = {len(getattr(self, f.name)) for f in fields(self)}
        if len(lengths) != 1:
            raise ValueError(f"Placements arrays differ in length: {sorted(lengths)}")
        is_ad = self.source == vocab.SOURCE_ADS
        if np.any(is_ad & (self.creative < 0)):
            raise ValueError("every ad placement needs a creative index >= 0")
        if np.any(~is_ad & (self.layout < 0)):
            raise ValueError("every promotion placement needs a layout index >= 0")
        if np.any((self.source < 0) | (self.source >= len(vocab.SOURCES))):
            raise ValueError("source must be 0 (ads) or 1 (promotions)")

    def __len__(self) -> int:
        return len(self.user)

    def slice(self, lo: int, hi: int) -> Placements:
        """Rows ``lo:hi`` of every array, validated again by the constructor."""
        return Placements(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})

    @classmethod
    def concat(cls, parts: Sequence[Placements]) -> Placements:
        """The rows of ``parts`` one after another (at least one part)."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


@dataclass(frozen=True)
class SampledLog:
    """Impressions as indices, sorted by time: what build_table turns into contract columns."""

    placements: Placements
    campaign: np.ndarray  # ads: ad campaign index; promotions: n_ad_campaigns + promo campaign index
    ts_us: np.ndarray  # int64 microseconds since the epoch, UTC
    labels: dict[str, np.ndarray]  # int8 per label, -1 where not observed
    truth: dict[str, np.ndarray]  # float64 marginal probability per label, NaN where not observed

    def __len__(self) -> int:
        return len(self.placements)

    @classmethod
    def concat(cls, parts: Sequence[SampledLog]) -> SampledLog:
        """The rows of ``parts`` one after another (at least one part): consecutive time ranges stay sorted."""
        return cls(
            placements=Placements.concat([p.placements for p in parts]),
            campaign=np.concatenate([p.campaign for p in parts]),
            ts_us=np.concatenate([p.ts_us for p in parts]),
            labels={k: np.concatenate([p.labels[k] for p in parts]) for k in parts[0].labels},
            truth={k: np.concatenate([p.truth[k] for p in parts]) for k in parts[0].truth},
        )
