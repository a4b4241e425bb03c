"""A trained model with what it needs to score contract rows: its configuration and fitted encoder (and how it was
trained). ``pipeline`` trains and loads one; serving, the studies and the reports score with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from unitarget import contract
from unitarget.config import Config
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureEncoder
from unitarget.evaluation import SEGMENTS, EvalTarget, EvaluationResult
from unitarget.evaluation.heads import channel_targets
from unitarget.evaluation.informed import InformedOracle
from unitarget.evaluation.streaming import EvalRows
from unitarget.models.average import PublishedModel
from unitarget.runs import TrainingRecord, save_run
from unitarget.scoring import predict_probabilities
from unitarget.training.tasks import TaskSet


@dataclass
class TrainedModel:
    """A trained model with the configuration and fitted encoder it needs to score contract rows."""

    config: Config
    encoder: FeatureEncoder
    model: PublishedModel  # one model, or an average (``train.refit_average``)
    #: how it was trained (``training.json``); None for a model assembled by hand
    record: TrainingRecord | None = None

    @property
    def tasks(self) -> TaskSet:
        """The model's tasks with their masks, in output-column order."""
        return TaskSet(self.config.tasks, self.config.sources)

    def encode(self, table: pa.Table) -> Batch:
        """Encode validated contract rows exactly as training did (unknown ids -> OOV rows)."""
        return self.encoder.transform(table)

    def probabilities(self, table: pa.Table) -> np.ndarray:
        """(N, T) probabilities for a validated, ts-normalised table, in ``config.tasks`` order."""
        return predict_probabilities(self.model, self.encoder.transform_features(table),
                                     self.config.train.eval_batch_size, self.config.train.use_bf16)

    def predict(self, table: pa.Table) -> pa.Table:
        """The contract's predictions: ``impression_id`` and ``p_<task>``, row for row."""
        probs = self.probabilities(table)
        columns = {contract.IMPRESSION_ID: table.column(contract.IMPRESSION_ID)}
        for j, task in enumerate(self.model.task_names):
            columns[contract.prediction_column(task)] = pa.array(probs[:, j])
        return pa.table(columns)

    def evaluation_targets(self) -> tuple[EvalTarget, ...]:
        """Promotions AP and Ads AP (the paper's two columns), then every other head on its label."""
        return channel_targets(self.config)

    def evaluate(self, table: pa.Table, targets: Sequence[EvalTarget] | None = None,
                 segments: Sequence[str] = SEGMENTS, *, informed: InformedOracle | None = None) -> EvaluationResult:
        """AP, ROC-AUC, log loss and calibration of ``targets`` (default ``evaluation_targets``)
        per popularity segment on labelled contract rows, with the oracle AP where the log carries
        true probabilities and the informed-oracle AP with ``informed`` (synthetic logs). The table
        is held whole; ``evaluate_log`` streams a log instead."""
        targets = self.evaluation_targets() if targets is None else tuple(targets)
        oracle = informed.probabilities(table) if informed is not None else None
        return self.evaluation_rows(table, targets, oracle).evaluate(targets, segments)

    def evaluation_rows(self, table: pa.Table, targets: Sequence[EvalTarget],
                        informed: Mapping[str, np.ndarray] | None = None) -> EvalRows:
        """Encode and score ``table`` and keep what the metrics of ``targets`` read of each row, with
        the informed oracle's probabilities of those rows if given (the one step ``evaluate`` and
        ``evaluate_log`` share, so they cannot disagree)."""
        batch = self.encode(table)
        probs = predict_probabilities(self.model, batch.features, self.config.train.eval_batch_size,
                                      self.config.train.use_bf16)
        return EvalRows.of(table, batch.targets, probs, self.model.task_names, targets, self.config.sources,
                           informed)

    def save(self, run_dir: str | Path) -> None:
        """Write this model as a run directory (config, encoder, weights, and the record if any)."""
        save_run(run_dir, self.config, self.encoder, self.model.state_dict(), self.record)
