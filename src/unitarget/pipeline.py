"""The library API behind the CLI: train, load, predict and evaluate, callable from a notebook.

A run directory holds everything serving needs and nothing that can execute code on load:

    config.json    the validated configuration the model was trained with
    encoder.json   fitted vocabularies, bag lengths, numeric statistics, tier map
    model.pt       best-validation weights (a tensor dict, read with weights_only=True)
    training.json  history per epoch, data range, skipped features, timings

Training writes into ``.<run>.partial/`` beside the target and moves it into place only when it
has finished, so a crash, a bad input or Ctrl-C never replaces a good run; ``resume=True``
continues from the partial directory's last checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from unitarget import contract
from unitarget.config import Config, TaskSpec, config_from_mapping, merge
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureEncoder
from unitarget.data.split import split_newest_days, time_range
from unitarget.errors import ContractError, UnitargetError
from unitarget.evaluation import (
    ADS_STREAM,
    PROMOTIONS_STREAM,
    EvalTarget,
    EvaluationResult,
    average_precision,
    evaluate_segments,
)
from unitarget.io import atomic_output, atomic_write_json, iter_log, publish_directory, read_log
from unitarget.models import MultiTaskModel, build_model
from unitarget.scoring import predict_probabilities
from unitarget.training import checkpoint
from unitarget.training.balancing import make_balancer
from unitarget.training.loop import BEST_WEIGHTS_FILE, CHECKPOINT_FILE, SilentHooks, TrainingHooks, fit
from unitarget.training.sampling import NaturalSampler, SourceBalancedSampler
from unitarget.training.tasks import TaskSet
from unitarget.validation import normalise_ts, validate_log

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.json"
TRAINING_FILE = "training.json"
_FINGERPRINT_FILE = "fingerprint.json"


def load_log(data: str | Path | pa.Table, config: Config, *, require_labels: bool = True) -> pa.Table:
    """Read (if a path) and validate a log against the contract before any work is done."""
    table = read_log(data) if isinstance(data, (str, Path)) else data
    validate_log(
        table, sources=config.sources, require_labels=require_labels,
        extra_numeric=[f.name for f in config.features.extra if f.kind.value in ("numeric", "vector")],
        extra_labels=[t.label for t in config.tasks],
    )
    return normalise_ts(table)


@dataclass
class TrainedModel:
    config: Config
    encoder: FeatureEncoder
    model: MultiTaskModel

    @property
    def tasks(self) -> TaskSet:
        return TaskSet(self.config.tasks, self.config.sources)

    def encode(self, table: pa.Table) -> Batch:
        return self.encoder.transform(table)

    def probabilities(self, table: pa.Table) -> np.ndarray:
        """(N, T) probabilities for a validated, ts-normalised table, in ``config.tasks`` order."""
        return predict_probabilities(self.model, self.encode(table).features, self.config.train.eval_batch_size,
                                     self.config.train.bf16)

    def predict(self, table: pa.Table) -> pa.Table:
        """The contract's predictions: ``impression_id`` and ``p_<task>``, row for row."""
        probs = self.probabilities(table)
        columns = {contract.IMPRESSION_ID: table.column(contract.IMPRESSION_ID)}
        for j, task in enumerate(self.model.task_names):
            columns[contract.prediction_column(task)] = pa.array(probs[:, j])
        return pa.table(columns)

    def evaluation_targets(self) -> tuple[EvalTarget, ...]:
        """Promotions AP and Ads AP (the paper's two columns), then every other head on its label."""
        stream_tasks = {s: self.config.stream_task(s) for s in (contract.PROMOTIONS, contract.ADS)}
        targets = [
            EvalTarget(PROMOTIONS_STREAM, stream_tasks[contract.PROMOTIONS], contract.REQUIRED_LABEL,
                       contract.PROMOTIONS),
            EvalTarget(ADS_STREAM, stream_tasks[contract.ADS], contract.REQUIRED_LABEL, contract.ADS),
        ]
        targets += [
            EvalTarget(t.name, t.name, t.label, None)
            for t in self.config.tasks if t.label != contract.REQUIRED_LABEL
        ]
        return tuple(targets)

    def evaluate(self, table: pa.Table) -> EvaluationResult:
        batch = self.encode(table)
        probs = predict_probabilities(self.model, batch.features, self.config.train.eval_batch_size, self.config.train.bf16)
        predictions = {task: probs[:, j] for j, task in enumerate(self.model.task_names)}
        labels, truths = {}, {}
        for label in {t.label for t in self.evaluation_targets()}:
            labels[label] = _float_labels(table, label)
            truth_column = contract.true_probability_column(label)
            if truth_column in table.column_names:
                truths[label] = table.column(truth_column).cast(pa.float64()).to_numpy(zero_copy_only=False)
        source = table.column(contract.SOURCE).cast(pa.string()).to_numpy(zero_copy_only=False)
        return evaluate_segments(predictions, labels, source, batch.targets.tier.numpy(), self.evaluation_targets(),
                                 truths or None)

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG_FILE, self.config.to_json_dict())
        atomic_write_json(run_dir / ENCODER_FILE, self.encoder.to_dict())
        checkpoint.save({"model": self.model.state_dict()}, run_dir / BEST_WEIGHTS_FILE)


def load_model(run_dir: str | Path) -> TrainedModel:
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, ENCODER_FILE, BEST_WEIGHTS_FILE):
        if not (run_dir / name).is_file():
            raise UnitargetError(f"{run_dir} is not a trained unitarget run: {name} is missing")
    config = config_from_mapping(json.loads((run_dir / CONFIG_FILE).read_text()), str(run_dir / CONFIG_FILE))
    encoder = FeatureEncoder.from_dict(json.loads((run_dir / ENCODER_FILE).read_text()))
    model = build_model(config.model, encoder.layout_, [t.name for t in config.tasks], config.task_groups())
    weights = checkpoint.load(run_dir / BEST_WEIGHTS_FILE)
    try:
        model.load_state_dict(weights["model"])
    except (KeyError, RuntimeError) as err:
        raise UnitargetError(f"{run_dir / BEST_WEIGHTS_FILE} does not match {CONFIG_FILE}: {err}") from None
    model.eval()
    return TrainedModel(config, encoder, model)


def train(
    data: str | Path | pa.Table,
    out: str | Path,
    config: Config,
    *,
    resume: bool = False,
    hooks: TrainingHooks | None = None,
) -> TrainedModel:
    """Validate, split by time, fit encoders, train with early stopping, and publish ``out``."""
    started = time.perf_counter()
    fit_rows, valid_rows = _split_training_log(data, config)
    tasks = TaskSet(config.tasks, config.sources)
    encoder = FeatureEncoder(config.features, config.sources, tasks.labels).fit(fit_rows)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, encoder.layout_, tasks.names, config.task_groups())
    return _train_and_publish(fit_rows, valid_rows, Path(out), config, encoder, model,
                              start_at_rate=tasks.names, resume=resume, hooks=hooks, started=started)


def finetune(
    base: TrainedModel,
    data: str | Path | pa.Table,
    out: str | Path,
    task: TaskSpec,
    *,
    freeze_encoder: bool = False,
    init_from: str | None = None,
    overrides: dict[str, Any] | None = None,
    hooks: TrainingHooks | None = None,
) -> TrainedModel:
    """Add a task head to a trained model and train it on ``data`` (a new objective, often small).

    The fitted encoder is kept as it is (same vocabularies, so the embeddings keep their meaning).
    The new head starts fresh at its base rate, or as a copy of head ``init_from``. With
    ``freeze_encoder`` only the new head learns and the old heads' outputs cannot change; without
    it, the old tasks keep training beside the new one on ``data`` so the shared encoder does not
    drift away from them. Model selection uses the new task's validation AP.
    """
    started = time.perf_counter()
    if task.name in base.model.task_names:
        raise UnitargetError(f"the model already has a task {task.name!r}: {base.model.task_names}")
    if init_from is not None and init_from not in base.model.task_names:
        raise UnitargetError(f"--init-from {init_from!r} is not a task of the model: {base.model.task_names}")
    tasks = [t.model_dump() for t in base.config.tasks] + [task.model_dump()]
    config = merge(base.config, {"tasks": tasks, **(overrides or {})})
    config = merge(config, {"evaluation": {"selection_task": task.name}})
    fit_rows, valid_rows = _split_training_log(data, config)
    names = [t.name for t in config.tasks]
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, base.encoder.layout_, names, config.task_groups())
    model.load_state_dict(base.model.state_dict(), strict=False)  # all but the new tower
    if init_from is not None:
        model.towers[task.name].load_state_dict(model.towers[init_from].state_dict())
    if freeze_encoder:
        model.freeze(except_towers=[task.name])
    encoder = base.encoder.with_labels(TaskSet(config.tasks, config.sources).labels)
    trained = _train_and_publish(fit_rows, valid_rows, Path(out), config, encoder, model,
                                 start_at_rate=[] if init_from else [task.name], resume=False, hooks=hooks,
                                 started=started)
    _record_old_heads(base, trained, encoder.transform(valid_rows), Path(out) / TRAINING_FILE)
    return trained


def head_aps(model: TrainedModel, batch: Batch) -> dict[str, float]:
    """AP of each head over the rows of ``batch`` that may update it (its sources, formats and
    observed labels): what the head is for, on data it was selected on, not tested on."""
    tasks = model.tasks
    probs = predict_probabilities(model.model, batch.features, model.config.train.eval_batch_size, model.config.train.bf16)
    rows, targets = tasks.loss_weights(batch.targets).bool().numpy(), tasks.targets(batch.targets).numpy()
    return {name: average_precision(targets[rows[:, j], j], probs[rows[:, j], j]) for j, name in enumerate(tasks.names)}


def _record_old_heads(base: TrainedModel, tuned: TrainedModel, valid: Batch, record: Path) -> None:
    """Add the old heads' validation AP before and after fine-tuning to the run's training record.

    ``valid`` is encoded for the fine-tuned task set, whose label columns extend the base model's
    in the same order, so both models read their own labels from it.
    """
    before, after = head_aps(base, valid), head_aps(tuned, valid)
    training = json.loads(record.read_text())
    training["old_heads_valid_ap"] = {t: {"before": before[t], "after": after[t]} for t in before}
    atomic_write_json(record, training)


def _split_training_log(data: str | Path | pa.Table, config: Config) -> tuple[pa.Table, pa.Table]:
    table = _training_rows(load_log(data, config), config)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    return split_newest_days(table, config.train.valid_days, purpose="validation")


def _train_and_publish(
    fit_rows: pa.Table,
    valid_rows: pa.Table,
    out: Path,
    config: Config,
    encoder: FeatureEncoder,
    model: MultiTaskModel,
    *,
    start_at_rate: Sequence[str],
    resume: bool,
    hooks: TrainingHooks | None,
    started: float,
) -> TrainedModel:
    tasks = TaskSet(config.tasks, config.sources)
    train_batch, valid_batch = encoder.transform(fit_rows), encoder.transform(valid_rows)
    for name, rate in zip(tasks.names, tasks.base_rates(train_batch.targets)):
        if name in start_at_rate:
            model.towers[name].start_at_rate(rate)

    staging = out.parent / f".{out.name}.partial"
    _prepare_staging(staging, _fingerprint(fit_rows, valid_rows, config), resume)
    state = fit(
        model, tasks, train_batch,
        sampler=_sampler(train_batch, config),
        balancer=make_balancer(config.loss.method, tasks.weights, alpha=config.loss.gradnorm_alpha,
                               seed=config.train.seed),
        validate=lambda m: _validation_score(m, valid_batch, config),
        train_config=config.train,
        optim_config=config.optim,
        run_dir=staging,
        resume=resume,
        hooks=hooks or SilentHooks(),
    )
    trained = TrainedModel(config, encoder, model)
    trained.save(staging)
    atomic_write_json(staging / TRAINING_FILE, {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_valid_score": state.best_score,
        "rows": {"train": len(train_batch), "valid": len(valid_batch)},
        "train_range": time_range(fit_rows),
        "valid_range": time_range(valid_rows),
        "features_used": [c.name for c in encoder.columns_],
        "features_skipped": encoder.skipped_,
        "tier_source": encoder.tier_map_.source_,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
    })
    (staging / CHECKPOINT_FILE).unlink(missing_ok=True)
    (staging / _FINGERPRINT_FILE).unlink(missing_ok=True)
    publish_directory(staging, out)
    return trained


def trained_on(run_dir: Path, table: pa.Table, config: Config) -> bool:
    """Whether the finished run at ``run_dir`` was trained with ``config`` on these ``table`` rows
    (same configuration, and the same fit / validation split by row count and time range): the
    run ``train(table, ..., config)`` would produce again, since training is deterministic."""
    try:
        record = json.loads((run_dir / TRAINING_FILE).read_text())
        saved = config_from_mapping(json.loads((run_dir / CONFIG_FILE).read_text()), str(run_dir))
    except (OSError, ValueError, UnitargetError):
        return False
    if saved.to_json_dict() != config.to_json_dict() or not (run_dir / BEST_WEIGHTS_FILE).is_file():
        return False
    fit_rows, valid_rows = split_newest_days(_training_rows(table, config), config.train.valid_days,
                                             purpose="validation")
    expected = {"rows": {"train": fit_rows.num_rows, "valid": valid_rows.num_rows},
                "train_range": list(time_range(fit_rows)), "valid_range": list(time_range(valid_rows))}
    return all(json.loads(json.dumps(record.get(k))) == v for k, v in expected.items())


def _training_rows(table: pa.Table, config: Config) -> pa.Table:
    sources = config.training_sources
    keep = pc.is_in(table.column(contract.SOURCE).cast(pa.string()), value_set=pa.array(sources))
    rows = table.filter(keep)
    if rows.num_rows == 0:
        raise UnitargetError(f"the log has no impressions from the sources the tasks learn from: {sources}")
    return rows


def _float_labels(table: pa.Table, label: str) -> np.ndarray:
    if label not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return table.column(label).cast(pa.float64()).to_numpy(zero_copy_only=False)


def _sampler(batch: Batch, config: Config) -> NaturalSampler | SourceBalancedSampler:
    size, seed = config.train.batch_size, config.train.seed
    present = set(torch.unique(batch.targets.source).tolist())
    if not config.sampling.balanced or len(present) < 2:
        return NaturalSampler(len(batch), size, seed)
    shares = {config.sources.index(s): w for s, w in config.sampling.ratios.items()}
    return SourceBalancedSampler(batch.targets.source, size, shares, seed)


def _validation_score(model: MultiTaskModel, valid: Batch, config: Config) -> tuple[float, dict[str, float]]:
    """Mean validation AP, over the sources the model trains on, of each source's stream task
    (the paper's model-selection metric), or of ``evaluation.selection_task`` when one is set
    (fine-tuning selects on its new task). It never sees the test split.
    """
    probs = predict_probabilities(model, valid.features, config.train.eval_batch_size, config.train.bf16)
    tasks = TaskSet(config.tasks, config.sources)
    selection = config.evaluation.selection_task
    chosen = (
        [(s, selection) for s in tasks.task_sources(selection) if s in config.training_sources]
        if selection else [(s, config.stream_task(s)) for s in config.training_sources]
    )
    details: dict[str, float] = {}
    for source, task in chosen:
        column = tasks.labels.index(tasks.specs[tasks.names.index(task)].label)
        rows = (valid.targets.source == config.sources.index(source)) & valid.targets.label_mask[:, column]
        if not bool(rows.any()):
            continue
        details[f"ap_{source}_{task}"] = average_precision(
            valid.targets.labels[rows, column].numpy(), probs[rows.numpy(), tasks.names.index(task)]
        )
    finite = [v for v in details.values() if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("-inf")), details


def _fingerprint(fit_rows: pa.Table, valid_rows: pa.Table, config: Config) -> dict[str, Any]:
    return {
        "train_rows": fit_rows.num_rows,
        "valid_rows": valid_rows.num_rows,
        "train_range": list(time_range(fit_rows)),
        "config": config.to_json_dict(),
    }


def _prepare_staging(staging: Path, fingerprint: dict[str, Any], resume: bool) -> None:
    if resume:
        if not (staging / CHECKPOINT_FILE).is_file():
            raise UnitargetError(f"nothing to resume: no interrupted run in {staging}")
        saved = json.loads((staging / _FINGERPRINT_FILE).read_text())
        if saved != json.loads(json.dumps(fingerprint)):
            raise UnitargetError(
                f"cannot resume from {staging}: the data or configuration differ from the interrupted run"
            )
        return
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    atomic_write_json(staging / _FINGERPRINT_FILE, fingerprint)


def write_predictions(model: TrainedModel, data: str | Path | pa.Table, out: str | Path, *,
                      chunk_rows: int = 1_000_000, on_chunk: Callable[[int], None] | None = None) -> int:
    """Score ``data`` chunk by chunk into ``out`` (Parquet: ``impression_id``, ``p_<task>``, row for
    row); return the number of rows. Memory holds a few chunks, whatever the log's size.

    Each chunk is validated against the contract before it is scored, and ``out`` is written to a
    temporary file renamed into place only at the end: a bad row anywhere stops the command with
    its position in the whole log, and an existing ``out`` is left untouched. (Impression ids are
    checked for repeats within a chunk, not across chunks.)
    """
    rows, writer = 0, None
    with atomic_output(out) as tmp:
        try:
            for start, chunk in iter_log(data, chunk_rows):
                try:
                    chunk = load_log(chunk, model.config, require_labels=False)
                except ContractError as err:
                    raise _in_log(err, start) from None
                predictions = model.predict(chunk)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, predictions.schema)
                writer.write_table(predictions)
                rows += chunk.num_rows
                if on_chunk is not None:
                    on_chunk(rows)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ContractError("empty dataset: the impression log has 0 rows", column=None, count=0)
    return rows


def _in_log(err: ContractError, start: int) -> ContractError:
    """``err`` raised on a chunk that starts at row ``start`` of the log, with the log's row numbers."""
    if not err.rows or start == 0:
        return err
    rows = [start + r for r in err.rows]
    message = (f"{err.message} (rows of the chunk that starts at row {start:,}; in the whole log: "
               f"{', '.join(str(r) for r in rows)})")
    return ContractError(message, column=err.column, rows=rows, count=err.count)
