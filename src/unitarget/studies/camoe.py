"""The CAMoE study (KDD 2025): per-format CTR across audio, video and display ads, architecture by
architecture, each over several seeds, scored per format with the head that serves each format.

Every arm trains on the same ad impressions of the older days (its own newest ``train.valid_days``
for model selection) and is scored on the same newest ``evaluation.test_days``. An arm is one or
more models: the single-task baseline is three models, one click head per format. Features are
encoded once per label set and shared by all arms; models train through the core loop
(``training.loop.fit``) and select their epoch on the mean click AP over formats on validation.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from unitarget import contract
from unitarget.config import Config, TaskSpec, merge
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureEncoder
from unitarget.data.split import split_newest_days
from unitarget.evaluation.batches import batch_formats, label_arrays
from unitarget.evaluation.formats import ALL_FORMATS, FormatRow, evaluate_formats
from unitarget.models import MultiTaskModel
from unitarget.pipeline import load_log
from unitarget.scoring import predict_probabilities
from unitarget.studies.camoe_arms import LABELS, Arm, camoe_arms, format_tasks
from unitarget.studies.camoe_results import ArmRun, StudyFacts, append_journal, read_journal
from unitarget.studies.cost import encoder_costs
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup
from unitarget.training.tasks import labels_of


@dataclass(frozen=True)
class StudyData:
    """The ad impressions of the study, split once: fit / validation (model selection) / test."""

    fit: pa.Table
    valid: pa.Table
    test: pa.Table

    @classmethod
    def split(cls, table: pa.Table, config: Config, rows: int | None = None, seed: int = 0) -> "StudyData":
        """Ad impressions only. ``rows`` keeps a uniform sample of that many training-day
        impressions (a smaller study); the test days are always kept whole, so every size is
        scored on the same, largest possible test set."""
        ads = table.filter(pc.equal(table.column(contract.SOURCE).cast(pa.string()), contract.ADS))
        testing = split_newest_days(ads, config.evaluation.test_days, purpose="testing",
                                    setting="evaluation.test_days")
        older, test = testing.older, testing.newest
        if rows is not None and rows < older.num_rows:
            keep = np.sort(np.random.default_rng(seed).choice(older.num_rows, size=rows, replace=False))
            older = older.take(pa.array(keep))
        validation = split_newest_days(older, config.train.valid_days, purpose="validation",
                                       setting="train.valid_days")
        return cls(validation.older, validation.newest, test)


class EncodedStudy:
    """Features fitted once on the fit rows; batches cached per label set (the Batch label columns)."""

    def __init__(self, data: StudyData, config: Config) -> None:
        self.data, self.cache = data, {}
        self.encoder = FeatureEncoder(config.features, config.sources, LABELS,
                                      config.shared_vocabularies()).fit(data.fit)

    def get(self, labels: tuple[str, ...]) -> tuple[FeatureEncoder, Batch, Batch, Batch]:
        """The encoder writing label columns ``labels`` and the fit, validation and test batches it encodes, built once
        per label set and cached."""
        if labels not in self.cache:
            enc = self.encoder.with_labels(labels)
            self.cache[labels] = (enc, enc.transform(self.data.fit), enc.transform(self.data.valid),
                                  enc.transform(self.data.test))
        return self.cache[labels]


def score_formats(models: Sequence[tuple[Config, MultiTaskModel]], batch: Batch, labels: tuple[str, ...],
                  truths: dict[str, np.ndarray] | None = None) -> list[FormatRow]:
    """Per-format rows of the heads of one or more models (the single-task arm has three)."""
    predictions: dict[str, np.ndarray] = {}
    specs: list[TaskSpec] = []
    for config, model in models:
        probs = predict_probabilities(model, batch.features, config.train.eval_batch_size, config.train.use_bf16)
        predictions |= {task: probs[:, j] for j, task in enumerate(model.task_names)}
        specs += list(config.tasks)
    wanted = [label for label in LABELS if any(t.label == label for t in specs)]
    targets = batch.targets
    return evaluate_formats(predictions, label_arrays(targets, labels), batch_formats(targets), specs, wanted,
                            truths)


def _selection_score(config: Config, labels: tuple[str, ...],
                     valid: Batch) -> Callable[[MultiTaskModel], tuple[float, dict[str, float]]]:
    """Mean validation click AP over the formats the model has a head for (never the test days)."""
    def validate(model: MultiTaskModel) -> tuple[float, dict[str, float]]:
        rows = [r for r in score_formats([(config, model)], valid, labels) if r.label == "click"]
        per_format = {f"ap_click_{r.format}": r.ap for r in rows if r.format != ALL_FORMATS}
        finite = [v for v in per_format.values() if np.isfinite(v)]
        return (float(np.mean(finite)) if finite else float("-inf")), per_format
    return validate


def train_model(config: Config, encoded: EncodedStudy) -> MultiTaskModel:
    """Build (``training.setup``: the configured sampler and loss balancer), train and return one
    model of an arm, holding its best validation epoch's weights."""
    labels = labels_of(config.tasks)
    encoder, train_batch, valid_batch, _ = encoded.get(labels)
    setup = build_setup(config, encoder.layout_, train_batch)
    fit(setup.model, setup.tasks, setup.batches, balancer=setup.balancer,
        validate=_selection_score(config, labels, valid_batch),
        train_config=config.train, optim_config=config.optim, store=MemoryStore())
    return setup.model


def run_arms(encoded: EncodedStudy, config: Config, arms: Sequence[Arm], seeds: Sequence[int],
             log: Callable[[str], None] = lambda _: None, done: Sequence[ArmRun] = (),
             on_run: Callable[[ArmRun], None] = lambda _: None) -> list[ArmRun]:
    """Train every arm with every seed (seed-major, so a stopped study has whole seeds); score each
    on the test days per format. Pairs already in ``done`` are kept, not trained again."""
    labels = LABELS
    _, _, _, test = encoded.get(labels)
    truths = _truths(encoded.data.test, labels)
    runs = list(done)
    finished = {(r.arm, r.seed) for r in done}
    for seed in seeds:
        for arm in arms:
            if (arm.name, seed) in finished:
                continue
            started = time.perf_counter()
            log(f"seed {seed}: training {arm.name}")
            models = [(c, train_model(c, encoded)) for c in arm.configs(config, seed)]
            rows = score_formats(models, test, labels, truths)
            runs.append(ArmRun(arm.name, seed, tuple(rows), time.perf_counter() - started,
                               sum(p.numel() for _, m in models for p in m.parameters())))
            on_run(runs[-1])
    return runs


def _truths(table: pa.Table, labels: Sequence[str]) -> dict[str, np.ndarray] | None:
    """label -> true probability (synthetic worlds write ``true_<label>``); None on real logs."""
    found = {label: table.column(contract.true_probability_column(label)).cast(pa.float64())
             .to_numpy(zero_copy_only=False) for label in labels
             if contract.true_probability_column(label) in table.column_names}
    return found or None


def measure_camoe(
    data: str | Path | pa.Table,
    config: Config,
    *,
    journal: Path,
    seeds: Sequence[int] = (0, 1, 2),
    arms: Sequence[Arm] | None = None,
    rows: int | None = None,
    cost_steps: int = 30,
    resume: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> StudyFacts:
    """Run every arm with every seed on ``data`` and measure what each encoder costs.

    Each finished (arm, seed) is appended to ``journal`` at once; ``resume`` keeps the ones found
    there (same data, size and configuration assumed) and trains only the rest."""
    started = time.perf_counter()
    arms = list(arms or camoe_arms())
    table = load_log(data, config)
    study = StudyData.split(table, config, rows)
    log(f"ad impressions: {study.fit.num_rows:,} fit, {study.valid.num_rows:,} validation, "
        f"{study.test.num_rows:,} test")
    encoded = EncodedStudy(study, config)
    done = read_journal(journal) if resume and journal.is_file() else []
    if not resume:
        journal.unlink(missing_ok=True)
    runs = run_arms(encoded, config, arms, seeds, log, done, on_run=lambda run: append_journal(journal, run))
    log("measuring the cost of each encoder")
    encoder, fit_batch, _, _ = encoded.get(LABELS)
    costs = encoder_costs(merge(config, {"tasks": format_tasks()}), encoder.layout_, fit_batch,
                          steps=cost_steps)
    return StudyFacts(
        arms=arms, runs=runs, costs=costs, seeds=tuple(seeds), log_rows=table.num_rows, sampled_rows=rows,
        split={"fit": study.fit.num_rows, "validation": study.valid.num_rows, "test": study.test.num_rows},
        config=config, seconds=time.perf_counter() - started,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
                f"({torch.get_num_threads()} threads)",
    )
