"""Evaluation in bounded memory: each chunk of a log leaves only what the metrics read of its rows.

``evaluate_segments`` needs, per row, the predictions of the heads the targets score, the labels,
the true probabilities (synthetic logs), the source, the popularity tier and the ad format; not the
features, which are most of a log's bytes and of its encoded tensors. :class:`EvalRows` holds those
columns compactly, so a log is evaluated in memory for a few chunks plus

    4 bytes per scored head + 4 per label + 8 per true-probability column + 3
    (+ 8 per label with an informed oracle's probability, when one is given)

per row (float32 predictions as the model computes them, float32 labels since 0/1/NaN are exact,
float64 true probabilities as the log holds them, one byte each for the source, tier and format
indices). ``TrainedModel.evaluate`` builds them for one table and ``pipeline.evaluate_log`` for a
log chunk by chunk, both through ``TrainedModel.evaluation_rows``: one wiring of the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.data.batch import Targets
from unitarget.data.vocabulary import as_string
from unitarget.evaluation.batches import format_names
from unitarget.evaluation.evaluate import EvalTarget, evaluate_segments
from unitarget.evaluation.result import EvaluationResult
from unitarget.evaluation.segments import SEGMENTS


@dataclass(frozen=True)
class EvalRows:
    """What ``evaluate_segments`` reads of each row of a log, and nothing it does not."""

    sources: tuple[str, ...]  # what the ``source`` indices name
    predictions: dict[str, np.ndarray]  # task -> (n,) float32, for the tasks the targets score
    labels: dict[str, np.ndarray]  # label -> (n,) float32, NaN where not observed (or no column)
    truths: dict[str, np.ndarray]  # label -> (n,) float64 true probability, where the log has one
    source: np.ndarray  # (n,) index into ``sources``; len(sources) for any other value
    tier: np.ndarray  # (n,) int8 popularity tier 0..7
    format: np.ndarray  # (n,) int8 index into ``contract.AD_FORMATS`` (``Targets.format``)
    #: label -> (n,) float64 informed-oracle probability (``evaluation.informed``), when one was given
    informed: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table, targets: Targets, probabilities: np.ndarray, task_names: Sequence[str],
           scored: Sequence[EvalTarget], sources: Sequence[str],
           informed: Mapping[str, np.ndarray] | None = None) -> EvalRows:
        """The rows of ``table`` as ``scored`` needs them: ``targets`` is its encoding
        (``FeatureEncoder.transform``), ``probabilities`` its (n, T) scores in ``task_names`` order,
        ``informed`` the informed oracle's probabilities of its rows (label -> (n,)), if any.
        Each kept column is a copy, so the chunk, its tensors and the (n, T) matrix can go."""
        tasks = {t.task for t in scored}
        predictions = {task: probabilities[:, j].copy() for j, task in enumerate(task_names) if task in tasks}
        labels, truths = {}, {}
        for label in dict.fromkeys(t.label for t in scored):
            labels[label] = _floats(table, label, np.float32)
            truth = contract.true_probability_column(label)
            if truth in table.column_names:
                truths[label] = _floats(table, truth, np.float64)
        index = pc.index_in(as_string(table.column(contract.SOURCE)), value_set=pa.array(sources, pa.string()))
        source = pc.fill_null(index, len(sources)).to_numpy().astype(np.min_scalar_type(len(sources)))
        kept = {label: np.asarray(q, dtype=np.float64) for label, q in (informed or {}).items() if label in labels}
        return cls(tuple(sources), predictions, labels, truths, source, targets.tier.numpy().astype(np.int8),
                   targets.format.numpy().astype(np.int8), kept)

    @classmethod
    def concatenate(cls, parts: Sequence[EvalRows]) -> EvalRows:
        """The rows of ``parts`` (chunks of one log, same columns) in order."""
        first = parts[0]

        def join(column: str, key: str | None = None) -> np.ndarray:
            return np.concatenate([getattr(p, column) if key is None else getattr(p, column)[key] for p in parts])

        return cls(first.sources, {k: join("predictions", k) for k in first.predictions},
                   {k: join("labels", k) for k in first.labels}, {k: join("truths", k) for k in first.truths},
                   join("source"), join("tier"), join("format"), {k: join("informed", k) for k in first.informed})

    def evaluate(self, targets: Sequence[EvalTarget], segments: Sequence[str] = SEGMENTS) -> EvaluationResult:
        """``evaluate_segments`` on these rows; the source and format names it compares are built
        here, as object arrays of shared strings (8 bytes a row each while the metrics run)."""
        source = np.asarray([*self.sources, None], dtype=object)[self.source]
        return evaluate_segments(self.predictions, self.labels, source, self.tier, targets, self.truths or None,
                                 formats=format_names(self.format), segments=segments,
                                 informed_probabilities=self.informed or None)


def aligned_chunks(chunks: Iterable[pa.Table], multiple: int) -> Iterator[pa.Table]:
    """The rows of ``chunks`` regrouped into tables of a multiple of ``multiple`` rows (but the last).

    ``predict_probabilities`` scores a table in slices of ``train.eval_batch_size`` rows, and a
    float32 matmul over a slice of other rows may round a row's output in its last bit. Regrouped
    at multiples of that size, every slice holds the rows the one pass over the whole table gives
    it, so a log scored in chunks gets bit-identical probabilities, hence identical metrics (ties
    and all). The rows held back are fewer than ``multiple``, as zero-copy slices.
    """
    pending: list[pa.Table] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += chunk.num_rows
        ready = held - held % multiple
        if ready:
            table = pa.concat_tables(pending)
            yield table.slice(0, ready)
            pending, held = [table.slice(ready)], held - ready
    if held:
        yield pa.concat_tables(pending)


def _floats(table: pa.Table, name: str, dtype: type[np.floating]) -> np.ndarray:
    """(n,) column ``name`` as ``dtype``, NaN where null or where the table has no such column."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan, dtype=dtype)
    return table.column(name).cast(pa.from_numpy_dtype(dtype)).to_numpy(zero_copy_only=False)
