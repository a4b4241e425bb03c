"""Turns a validated impression log into a ``Batch`` once, before training (tensorise once).

``FeatureEncoder`` follows the estimator contract: the constructor stores settings, ``fit`` learns
vocabularies, bag lengths, numeric statistics and the tier map from training rows only (``fit_chunks``
learns the same from a log streamed in chunks; ``fitting`` holds its accumulators), and the fitted
state (ending in ``_``) is saved beside the model as JSON, so serving encodes exactly as
training did. All embedding tables are fused into one: each feature owns a contiguous block of
rows (``FeatureLayout.offsets``), and row 0 is the shared padding row for bags. A bag may instead
*share* a categorical feature's vocabulary and block (``shared``: e.g. the shows of a user's history
and ``show_id``, for target attention): that vocabulary is then fitted on both columns' ids, and the
same show is the same row wherever it appears. What each feature
kind's encoding means lives in ``encoders`` (shared with the scoring service's request encoder);
this module reads Arrow columns and fits the state those functions use.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from unitarget import contract
from unitarget.config import FeaturesConfig
from unitarget.contract import FeatureColumn, Group, Kind
from unitarget.data.batch import Batch, Features, Targets
from unitarget.data.encoders import (PADDING_ROW, TIME_FIELDS, log1p_counts, pack_bags, pack_vectors, scale_counts,
                                     time_column)
from unitarget.data.fitting import IdCounts, Moments
from unitarget.data.tiers import TierMap
from unitarget.data.vocabulary import HashedVocabulary, Vocabulary, as_string, vocabulary_from_dict
from unitarget.errors import UnitargetError


@dataclass(frozen=True)
class FeatureLayout:
    """Where each feature lives in ``Features.ids``/``Features.dense`` and in the fused table.

    categorical[j] is column j of ``ids``; bags[k] = (name, start, stop) columns of ``ids``;
    offsets[name] is the first table row of that feature's vocabulary block.
    """

    categorical: tuple[str, ...]
    bags: tuple[tuple[str, int, int], ...]
    dense: tuple[tuple[str, int], ...]  # (name, width)
    offsets: dict[str, int]
    table_rows: int
    groups: dict[str, str]

    @property
    def n_categorical(self) -> int:
        """Number of single-id features: the leading columns of ``Features.ids``."""
        return len(self.categorical)

    @property
    def ids_width(self) -> int:
        """Columns of ``Features.ids``: the categorical ids, then every bag's tokens."""
        return self.bags[-1][2] if self.bags else self.n_categorical

    @property
    def dense_dim(self) -> int:
        """Width D of ``Features.dense``: the sum of the numeric (1) and vector feature widths."""
        return sum(width for _, width in self.dense)


class FeatureEncoder:
    """Arrow impression log -> ``Batch``: settings in the constructor, state fitted on training rows (attributes ending
    in ``_``) and saved as JSON, so serving encodes exactly as training did. ``shared`` maps a bag to the categorical
    feature whose vocabulary (and table block) its tokens read (``Config.shared_vocabularies``)."""

    def __init__(
        self,
        features: FeaturesConfig,
        sources: tuple[str, ...],
        labels: tuple[str, ...],
        shared: Mapping[str, str] | None = None,
    ) -> None:
        self.features = features
        self.sources = sources
        self.labels = labels
        self.shared = dict(shared or {})

    # ----------------------------------------------------------------------------------- fit
    def candidate_columns(self) -> list[FeatureColumn]:
        """Every feature the configuration asks for, present in the data or not."""
        columns = list(contract.STANDARD_FEATURES) if self.features.use_standard else []
        if self.features.time_features:
            columns += contract.DERIVED_TIME_FEATURES
        columns += [FeatureColumn(e.name, e.group, e.kind) for e in self.features.extra]
        return [
            c for c in columns
            if c.name not in self.features.exclude and c.group not in self.features.drop_groups
        ]

    def fit(self, table: pa.Table) -> "FeatureEncoder":
        """``fit_chunks`` on the one chunk ``table`` (training rows only): a log in memory is fitted by the same code
        as one streamed in chunks."""
        return self.fit_chunks([table])

    def fit_chunks(self, chunks: Iterable[pa.Table]) -> "FeatureEncoder":
        """Learn, from training rows only and in one pass over their chunks (e.g. ``io.iter_log``), which wanted
        columns are present, each id feature's vocabulary (ids counted over every chunk, then its group's
        ``min_count`` applied), bag lengths (longest list, capped at ``bag_max_len``), mean and std of log1p counts
        (merged moments), vector widths and the tier map (streams per show summed). The fitted state is ``fit``'s on
        the chunks' concatenation, in memory set by one chunk and the vocabularies rather than the log's length.

        Which columns are present is read from the first chunk's schema: the chunks of one log share its unified
        schema, so every later chunk must carry the same columns. A shared vocabulary applies when both its bag and
        its categorical feature are used (``shared_``)."""
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            raise UnitargetError("cannot fit the feature encoder on no rows: the log gave no chunks")
        self._choose_columns(first.schema)
        counts = {name: IdCounts() for name in self._vocabulary_owners() if not self.features.hash_buckets.get(name)}
        longest = {c.name: 0 for c in self.columns_ if c.kind in (Kind.BAG, Kind.VECTOR)}
        moments = {c.name: Moments() for c in self.columns_ if c.kind is Kind.NUMERIC}
        tier_map = TierMap()
        for chunk in itertools.chain([first], chunks):
            self._accumulate(chunk, counts, longest, moments)
            tier_map.partial_fit(chunk)
        self.vocabularies_: dict[str, Vocabulary | HashedVocabulary] = {
            name: counts[name].vocabulary(self._min_count(name)) if name in counts
            else HashedVocabulary(self.features.hash_buckets[name]) for name in self._vocabulary_owners()}
        self.vocabularies_ |= {bag: self.vocabularies_[owner] for bag, owner in self.shared_.items()}
        kinds = {c.name: c.kind for c in self.columns_}
        self.bag_lengths_ = {name: max(1, min(n, self.features.bag_max_len)) for name, n in longest.items()
                             if kinds[name] is Kind.BAG}
        self.numeric_stats_ = {name: _mean_std(m) for name, m in moments.items()}
        self.vector_widths_ = {name: n for name, n in longest.items() if kinds[name] is Kind.VECTOR}
        self.tier_map_ = tier_map
        self.layout_ = self._layout()
        return self

    def _choose_columns(self, schema: pa.Schema) -> None:
        """The wanted columns present in ``schema`` (``columns_``; the rest ``skipped_``) and the shared vocabularies
        whose bag and categorical feature are both among them (``shared_``)."""
        present = set(schema.names) | TIME_FIELDS.keys()  # derived from ts
        wanted = self.candidate_columns()
        self.columns_ = [c for c in wanted if c.name in present]
        self.skipped_ = [c.name for c in wanted if c.name not in present]
        kinds = {c.name: c.kind for c in self.columns_}
        self.shared_ = {bag: owner for bag, owner in self.shared.items()
                        if kinds.get(bag) is Kind.BAG and kinds.get(owner) is Kind.CATEGORICAL}

    def _vocabulary_owners(self) -> list[str]:
        """The id features that own a vocabulary, in column order: every categorical feature and unshared bag."""
        return [c.name for c in self.columns_
                if c.kind in (Kind.CATEGORICAL, Kind.BAG) and c.name not in self.shared_]

    def _min_count(self, name: str) -> int:
        """The ``min_count`` of feature ``name``'s vocabulary: its group's in ``min_count_by_group``, else
        ``min_count``."""
        group = next(c.group for c in self.columns_ if c.name == name)
        return self.features.min_count_by_group.get(group, self.features.min_count)

    def _accumulate(self, chunk: pa.Table, counts: dict[str, IdCounts], longest: dict[str, int],
                    moments: dict[str, Moments]) -> None:
        """Add one chunk to the running statistics: the ids of each counted vocabulary (a bag's tokens flattened; a
        bag sharing a vocabulary counts into its owner's, so ids seen only in the bag get rows too), the longest list
        of each bag and vector, and the moments of each numeric feature's log1p counts."""
        for column in self.columns_:
            values = _column(chunk, column.name)
            if column.kind in (Kind.CATEGORICAL, Kind.BAG):
                owner = self.shared_.get(column.name, column.name)
                if owner in counts:  # hashed vocabularies learn nothing, so their ids are not counted
                    counts[owner].update(pc.list_flatten(values) if column.kind is Kind.BAG else values)
            if column.kind is Kind.BAG:
                longest[column.name] = max(longest[column.name], _longest_list(values))
            elif column.kind is Kind.VECTOR:
                longest[column.name] = max(longest[column.name], _vector_width(values))
            elif column.kind is Kind.NUMERIC:
                moments[column.name].update(log1p_counts(_floats(values)))

    def _layout(self) -> FeatureLayout:
        categorical = tuple(c.name for c in self.columns_ if c.kind is Kind.CATEGORICAL)
        bag_names = [c.name for c in self.columns_ if c.kind is Kind.BAG]
        bags, start = [], len(categorical)
        for name in bag_names:
            bags.append((name, start, start + self.bag_lengths_[name]))
            start += self.bag_lengths_[name]
        offsets, row = {}, PADDING_ROW + 1
        for name in (*categorical, *bag_names):
            if name in self.shared_:  # the owner is categorical, so its block is placed already
                offsets[name] = offsets[self.shared_[name]]
                continue
            offsets[name] = row
            row += self.vocabularies_[name].size
        dense = tuple((c.name, 1) for c in self.columns_ if c.kind is Kind.NUMERIC) + tuple(
            (name, width) for name, width in self.vector_widths_.items()
        )
        return FeatureLayout(
            categorical=categorical,
            bags=tuple(bags),
            dense=dense,
            offsets=offsets,
            table_rows=row,
            groups={c.name: c.group.value for c in self.columns_},
        )

    def with_labels(self, labels: tuple[str, ...]) -> "FeatureEncoder":
        """The same fitted encoder producing ``labels`` as the label columns (new objectives)."""
        copy = FeatureEncoder.from_dict(self.to_dict())
        copy.labels = tuple(labels)
        return copy

    # ----------------------------------------------------------------------------- transform
    def transform(self, table: pa.Table) -> Batch:
        """Encode every row of ``table``; unknown ids map to each feature's OOV row."""
        return Batch(self.transform_features(table), self._targets(table))

    def transform_features(self, table: pa.Table) -> Features:
        """The model inputs of every row of ``table`` (label columns are not read)."""
        n, layout = table.num_rows, self.layout_
        ids = np.zeros((n, layout.ids_width), dtype=np.int32)
        # A feature absent at scoring time reads as unknown: OOV row, empty bag, zero dense input.
        present = set(table.column_names) | TIME_FIELDS.keys()  # derived from ts
        for j, name in enumerate(layout.categorical):
            local = self.vocabularies_[name].transform(_column(table, name)) if name in present else 0
            ids[:, j] = local + layout.offsets[name]
        for name, start, stop in layout.bags:
            if name in present:
                ids[:, start:stop] = self._encode_bag(_column(table, name), name, stop - start)
        dense = np.zeros((n, layout.dense_dim), dtype=np.float32)
        col = 0
        for name, w in layout.dense:
            if name in present:
                dense[:, col:col + w] = self._encode_dense(_column(table, name), name, w)
            col += w
        return Features(ids=torch.from_numpy(ids), dense=torch.from_numpy(dense))

    def _targets(self, table: pa.Table) -> Targets:
        labels, mask = self._encode_labels(table)
        source = pc.index_in(as_string(table.column(contract.SOURCE)), value_set=pa.array(self.sources))
        return Targets(
            labels=torch.from_numpy(labels),
            label_mask=torch.from_numpy(mask),
            source=torch.from_numpy(pc.fill_null(source, 0).to_numpy().astype(np.int64)),
            tier=torch.from_numpy(self.tier_map_.tiers(table).astype(np.int64)),
            format=torch.from_numpy(_format_index(table)),
        )

    def _encode_bag(self, values: pa.ChunkedArray, name: str, length: int) -> np.ndarray:
        """(N, length) table rows of each row's first ``length`` items; 0 pads short lists."""
        values = pc.list_slice(values, 0, length)
        counts = pc.fill_null(pc.list_value_length(values), 0).to_numpy().astype(np.int64)
        local = self.vocabularies_[name].transform(pc.list_flatten(values))
        return pack_bags(counts, local, length, self.layout_.offsets[name])

    def _encode_dense(self, values: pa.ChunkedArray, name: str, width: int) -> np.ndarray:
        """(N, width) dense inputs of a numeric (width 1) or vector feature."""
        if name in self.numeric_stats_:
            return scale_counts(_floats(values), *self.numeric_stats_[name])[:, None]
        flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)
        return pack_vectors(flat, values.is_valid().to_numpy(zero_copy_only=False), width)

    def _encode_labels(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        n = table.num_rows
        labels = np.zeros((n, len(self.labels)), dtype=np.float32)
        mask = np.zeros((n, len(self.labels)), dtype=bool)
        for j, label in enumerate(self.labels):
            if label not in table.column_names:
                continue
            values = table.column(label).cast(pa.float32())
            mask[:, j] = values.is_valid().to_numpy(zero_copy_only=False)
            labels[:, j] = pc.fill_null(values, 0.0).to_numpy()
        return labels, mask

    # --------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """The settings and fitted state as JSON types (vocabularies, bag lengths, numeric statistics, tier map,
        layout): saved beside the weights, loaded with ``from_dict`` without executing code. A shared vocabulary is
        written once, under its owner."""
        return {
            "features": self.features.model_dump(mode="json"),
            "sources": list(self.sources),
            "labels": list(self.labels),
            "shared": self.shared,
            "shared_fitted": self.shared_,
            "columns": [[c.name, c.group.value, c.kind.value] for c in self.columns_],
            "skipped": self.skipped_,
            "vocabularies": {k: v.to_dict() for k, v in self.vocabularies_.items() if k not in self.shared_},
            "bag_lengths": self.bag_lengths_,
            "numeric_stats": self.numeric_stats_,
            "vector_widths": self.vector_widths_,
            "tier_map": self.tier_map_.to_dict(),
            "layout": asdict(self.layout_),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureEncoder":
        """A fitted encoder from ``to_dict``'s JSON, without refitting: the same ids and layout as the encoder that
        wrote it."""
        encoder = cls(FeaturesConfig.model_validate(data["features"]), tuple(data["sources"]),
                      tuple(data["labels"]), data.get("shared"))  # encoders saved before sharing have none
        encoder.columns_ = [FeatureColumn(n, Group(g), Kind(k)) for n, g, k in data["columns"]]
        encoder.skipped_ = list(data["skipped"])
        encoder.shared_ = dict(data.get("shared_fitted", {}))
        encoder.vocabularies_ = {k: vocabulary_from_dict(v) for k, v in data["vocabularies"].items()}
        for bag, owner in encoder.shared_.items():
            encoder.vocabularies_[bag] = encoder.vocabularies_[owner]
        encoder.bag_lengths_ = dict(data["bag_lengths"])
        encoder.numeric_stats_ = {k: tuple(v) for k, v in data["numeric_stats"].items()}
        encoder.vector_widths_ = dict(data["vector_widths"])
        encoder.tier_map_ = TierMap.from_dict(data["tier_map"])
        layout = data["layout"]
        encoder.layout_ = FeatureLayout(
            categorical=tuple(layout["categorical"]),
            bags=tuple((n, int(a), int(b)) for n, a, b in layout["bags"]),
            dense=tuple((n, int(w)) for n, w in layout["dense"]),
            offsets=dict(layout["offsets"]),
            table_rows=int(layout["table_rows"]),
            groups=dict(layout["groups"]),
        )
        return encoder


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    """A column, deriving hour of day and weekday (as ids) from ``ts``."""
    if name in TIME_FIELDS:
        return time_column(name, table.column(contract.TS))
    return table.column(name)


def _format_index(table: pa.Table) -> np.ndarray:
    """(N,) index of each row's format in ``contract.AD_FORMATS``; null, other or absent -> len."""
    other = len(contract.AD_FORMATS)
    if contract.FORMAT not in table.column_names:
        return np.full(table.num_rows, other, dtype=np.int64)
    index = pc.index_in(as_string(table.column(contract.FORMAT)), value_set=pa.array(contract.AD_FORMATS))
    return pc.fill_null(index, other).to_numpy().astype(np.int64)


def _floats(values: pa.ChunkedArray) -> np.ndarray:
    """(N,) float64 values of a number column, NaN where null."""
    return values.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _longest_list(values: pa.ChunkedArray) -> int:
    """Length of the longest list in a list column; 0 when every row is null or empty."""
    return int(pc.max(pc.list_value_length(values)).as_py() or 0)


def _vector_width(values: pa.ChunkedArray) -> int:
    """Width of a vector column: its fixed size, else its longest list."""
    if pa.types.is_fixed_size_list(values.type):
        return values.type.list_size
    return _longest_list(values)


def _mean_std(moments: Moments) -> tuple[float, float]:
    """A numeric feature's (mean, std) of log1p counts; a std of 0 (or NaN: no values) becomes 1, so scaling never
    divides by zero."""
    mean, std = moments.mean_std()
    return mean, std if std > 0 else 1.0
