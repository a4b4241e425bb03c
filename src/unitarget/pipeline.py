"""The library API behind the CLI: train, load, predict and evaluate, callable from a notebook.

What a run directory holds and how it is staged and published is ``runs``'s business; what a
training builds is ``training.setup``'s; this module wires them to the contract's logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from unitarget.config import Config, TaskSpec, merge
from unitarget.data.batch import Batch
from unitarget.data.cache import EncodedCache
from unitarget.data.features import FeatureEncoder, FeatureLayout
from unitarget.data.logs import load_log, training_rows, validated_chunks
from unitarget.data.split import TimeSplit, split_newest_days
from unitarget.errors import UnitargetError
from unitarget.evaluation import SEGMENTS, EvalTarget, EvaluationResult
from unitarget.evaluation.batches import evaluate_batch
from unitarget.evaluation.heads import head_targets, selection_score, selection_targets
from unitarget.evaluation.informed import InformedOracle
from unitarget.evaluation.streaming import EvalRows, aligned_chunks
from unitarget.io import atomic_output
from unitarget.models import MultiTaskModel, build_model
from unitarget.models.average import (InputMap, LogitAverage, first_member, is_average, load_average,
                                      with_first_member)
from unitarget.runs import (CONFIG_FILE, WEIGHTS_FILE, DataSpan, Staging, TrainingRecord, fingerprint, read_run,
                            run_fingerprint)
from unitarget.scoring import predict_probabilities
from unitarget.streaming import Progress, prepare_cache
from unitarget.trained import TrainedModel
from unitarget.training.batches import TrainingRows, ValidationRows
from unitarget.training.distributed import DistributedContext
from unitarget.training.hooks import SilentHooks, TrainingHooks
from unitarget.training.loop import fit
from unitarget.training.refit import RefitRows, train_again
from unitarget.training.setup import build_setup, encoder_for
from unitarget.training.tasks import labels_of
from unitarget.training.windows import CachedRows


def load_model(run_dir: str | Path) -> TrainedModel:
    """Load a run directory written by ``train``/``finetune`` (weights read without executing code)."""
    run = read_run(run_dir)

    def build(layout: FeatureLayout, tasks: list[str]) -> MultiTaskModel:
        return build_model(run.config.model, layout, tasks, run.config.task_groups())

    tasks = [t.name for t in run.config.tasks]
    try:
        model = load_average(run.weights, run.encoder.layout_, build, tasks) if is_average(run.weights) \
            else build(run.encoder.layout_, tasks)
        model.load_state_dict(run.weights)
    except (RuntimeError, KeyError) as err:
        raise UnitargetError(f"{run.path / WEIGHTS_FILE} does not match {CONFIG_FILE}: {err}") from None
    model.eval()
    return TrainedModel(run.config, run.encoder, model, run.record)


def train(
    data: str | Path | pa.Table,
    out: str | Path,
    config: Config,
    *,
    resume: bool = False,
    hooks: TrainingHooks | None = None,
    cache: str | Path | None = None,
    progress: Progress | None = None,
    distributed: DistributedContext = DistributedContext(),
) -> TrainedModel:
    """Validate, split by time, fit encoders, train with early stopping, and publish ``out``.

    A log on disk is read chunk by chunk into an on-disk cache of encoded rows (``streaming``; in
    ``cache``, by default ``.<out>.cache/`` beside ``out``), reused by a rerun and by ``--resume``,
    and trained on through shuffle windows (``training.windows``): memory is set by
    ``stream.*``, not by the log's length. A table in memory is encoded and trained on in memory.
    The returned model carries its ``record`` (what ``training.json`` holds). ``resume``
    continues an interrupted run of the same training (same fingerprint) from its last checkpoint:
    the last epoch's end, or a point inside an epoch with ``train.checkpoint_every_steps`` /
    ``_minutes``; it reaches the weights the uninterrupted run would have. Under ``distributed``
    (torchrun: ``training.distributed.from_env``) rank 0 builds the encoded cache and the other
    ranks read it (a table in memory: every rank fits the same deterministic encoder), each rank
    trains its share of every global batch, and rank 0 alone writes ``out``. With ``train.refit``
    (the default) the model selected on the validation days then says only how long to train: a
    fresh model trains that long on every row, those days included (``training.refit``; a log on
    disk through a second cache of every row), and is the one published.
    """
    started, out = time.perf_counter(), Path(out)
    everything: Callable[[], RefitRows]
    if isinstance(data, pa.Table):
        split = split_training_log(data, config)
        encoder = encoder_for(config).fit(split.older)
        prepared = _in_memory(split, encoder)

        def everything() -> RefitRows:
            rows = pa.concat_tables([split.older, split.newest])
            refit_encoder = encoder_for(config).fit(rows)
            return RefitRows(refit_encoder, refit_encoder.transform(rows), rows.num_rows)
    else:
        root = Path(cache) if cache is not None else out.parent / f".{out.name}.cache"

        def cached(refit: bool) -> EncodedCache:
            with distributed.main_first():  # rank 0 builds the cache; the others then find it and read it
                return prepare_cache(data, config, root, progress if distributed.is_main else None, refit=refit)

        encoded = cached(refit=False)
        encoder = encoded.encoder
        prepared = _Prepared(CachedRows(encoded, config.sources), ValidationRows.of_shard(encoded.valid),
                             _span(encoded.info["span"]), _window(encoded.info["cut"]),
                             {"cache": encoded.key, "stream": config.stream.model_dump()})

        def everything() -> RefitRows:
            encoded_all = cached(refit=True)
            return RefitRows(encoded_all.encoder, CachedRows(encoded_all, config.sources), encoded_all.train_rows)
    return _train_and_publish(prepared, out, config, encoder, resume=resume, hooks=hooks, started=started,
                              distributed=distributed, refit=everything if config.train.refit else None)


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
    drift away from them. Model selection uses the new task's validation AP. The record holds the
    old heads' validation AP on ``data`` before and after (``old_heads_valid_ap``).
    """
    started = time.perf_counter()
    if base.config.model.encoder == "linear":
        raise UnitargetError("finetune adds a head to a deep model; a linear model's heads are columns of one weight "
                             "table (models/linear.py): train a new logreg model with the extra task instead")
    if task.name in base.model.task_names:
        raise UnitargetError(f"the model already has a task {task.name!r}: {base.model.task_names}")
    if init_from is not None and init_from not in base.model.task_names:
        raise UnitargetError(f"--init-from {init_from!r} is not a task of the model: {base.model.task_names}")
    tasks = [t.model_dump() for t in base.config.tasks] + [task.model_dump()]
    config = merge(base.config, {"tasks": tasks, **(overrides or {})})
    config = merge(config, {"evaluation": {"selection_task": task.name}})
    if freeze_encoder and config.model.wide and config.optim.weight_decay > 0:
        raise UnitargetError("finetune --freeze-encoder keeps a wide model's old columns by zeroing their gradient, "
                             "which weight decay would still move; set optim.weight_decay = 0 for it")
    split = split_training_log(data, config)

    def from_base(model: MultiTaskModel) -> None:
        model.load_base(first_member(base.model))  # an average's first member reads the base encoder's inputs
        if init_from is not None:
            model.towers[task.name].load_state_dict(model.towers[init_from].state_dict())
            if model.wide is not None:
                model.wide.copy_task(init_from, task.name)
        if freeze_encoder:
            model.freeze(except_towers=[task.name])

    encoder = base.encoder.with_labels(labels_of(config.tasks))
    return _train_and_publish(_in_memory(split, encoder), Path(out), config, encoder, resume=False, hooks=hooks,
                              started=started, prepare=from_base, fresh_towers=[] if init_from else [task.name],
                              base=base)


def head_aps(model: TrainedModel, rows: ValidationRows,
             targets: Sequence[EvalTarget] | None = None) -> dict[str, float]:
    """AP of each head over the ``rows`` that may update it (its sources, formats and
    observed labels): what the head is for, on data it was selected on, not tested on; or of ``targets``."""
    targets = head_targets(model.config) if targets is None else targets
    result = evaluate_batch(_probabilities(model.model, rows, model.config), model.model.task_names, rows.targets,
                            sources=model.config.sources, labels=model.encoder.labels, scored=targets)
    return {t.name: result.ap(t.name) for t in targets}


def _probabilities(model: MultiTaskModel, rows: ValidationRows, config: Config) -> np.ndarray:
    """(N, T) probabilities of ``rows``, read slice by slice."""
    train_config = config.train
    parts = [predict_probabilities(model, f, train_config.eval_batch_size, train_config.use_bf16)
             for f in rows.features()]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def split_training_log(data: str | Path | pa.Table, config: Config) -> TimeSplit:
    """The validated log's rows from the sources the tasks learn from, split into fit rows
    (``older``) and the newest ``train.valid_days`` (``newest``; on a short log the short-log
    rule's window) for model selection: exactly the rows ``train`` uses."""
    table = training_rows(load_log(data, config), config)
    return split_newest_days(table, config.train.valid_days, purpose="validation", setting="train.valid_days")


@dataclass(frozen=True)
class _Prepared:
    """What a training is fitted and selected on, in memory or in the encoded cache."""

    rows: Batch | TrainingRows
    valid: ValidationRows
    span: DataSpan
    window: dict[str, Any]  # the validation window (TimeSplit.to_dict)
    streamed: dict[str, Any] | None = None  # the cache key and stream settings, for the fingerprint


def _in_memory(split: TimeSplit, encoder: FeatureEncoder) -> _Prepared:
    train_batch, valid_batch = encoder.transform(split.older), encoder.transform(split.newest)
    return _Prepared(train_batch, ValidationRows.of_batch(valid_batch), DataSpan.of(split.older, split.newest),
                     split.to_dict())


def _span(span: dict[str, Any]) -> DataSpan:
    return DataSpan(span["train_rows"], span["valid_rows"], tuple(span["train_range"]), tuple(span["valid_range"]))


def _window(cut: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cut.items() if k != "at"}


def _train_and_publish(
    prepared: _Prepared,
    out: Path,
    config: Config,
    encoder: FeatureEncoder,
    *,
    resume: bool,
    hooks: TrainingHooks | None,
    started: float,
    prepare: Callable[[MultiTaskModel], None] | None = None,
    fresh_towers: Sequence[str] | None = None,
    base: TrainedModel | None = None,
    distributed: DistributedContext = DistributedContext(),
    refit: Callable[[], RefitRows] | None = None,
) -> TrainedModel:
    """Train in ``out``'s staging directory and publish it with its record, written once (by rank 0 under DDP). With
    ``refit``, the model selected on validation decides only how long to train: a fresh model trains that many epochs
    on ``refit()``'s rows and is published instead (its validation figures are the selected model's), or with
    ``train.refit_average`` the mean of its and the selected model's logits (``models.average``). A fine-tune of an
    average trains its first member and keeps the others."""
    hooks = hooks or SilentHooks()
    setup = build_setup(config, encoder.layout_, prepared.rows, prepare=prepare, fresh_towers=fresh_towers)
    staging = Staging(out)
    distributed.from_main(lambda: staging.start(fingerprint(config, prepared.span, prepared.streamed), resume=resume))
    state = fit(
        setup.model, setup.tasks, setup.batches, balancer=setup.balancer,
        validate=lambda m: _validation_score(m, prepared.valid, config),
        train_config=config.train, optim_config=config.optim, store=staging, resume=resume,
        hooks=hooks, distributed=distributed,
    )
    trained = TrainedModel(config, encoder, setup.model)
    old_heads, again = None, None
    if base is not None:
        trained.model = with_first_member(base.model, setup.model).eval()  # an average's other members as they were
        before, after = head_aps(base, prepared.valid), head_aps(trained, prepared.valid)
        old_heads = {t: {"before": before[t], "after": after[t]} for t in before}
    if refit is not None:
        selected_valid = head_aps(trained, prepared.valid, trained.evaluation_targets())
        rows = refit()
        model, again = train_again(rows, config, state.best_step / len(setup.batches), hooks, distributed)
        if config.train.refit_average:
            model = LogitAverage([model, setup.model], [None, InputMap.between(rows.encoder, encoder)]).eval()
        trained = TrainedModel(config, rows.encoder, model)
        again["selected_valid_ap"] = selected_valid
    if trained.model is not setup.model:  # a refit or an average: not the weights selection kept
        distributed.from_main(lambda: staging.save_best(trained.model.state_dict()))
    published = trained.encoder  # the refit's, fitted on every row, or the selection's
    trained.record = TrainingRecord(
        history=state.history, best_epoch=state.best_epoch, best_step=state.best_step, best_valid_score=state.best_score,
        span=prepared.span,
        features_used=[c.name for c in published.columns_], features_skipped=published.skipped_,
        tier_source=published.tier_map_.source_, parameters=sum(p.numel() for p in trained.model.parameters()),
        seconds=time.perf_counter() - started, old_heads_valid_ap=old_heads, valid_window=prepared.window,
        refit=again,
    )
    distributed.from_main(lambda: staging.publish(config, published, trained.record))
    return trained


def trained_on(run_dir: Path, table: pa.Table, config: Config) -> bool:
    """Whether the finished run at ``run_dir`` is the run ``train(table, ..., config)`` would
    produce again (training is deterministic): the same fingerprint, i.e. the same training part
    of the configuration and the same fit / validation rows."""
    found = run_fingerprint(run_dir)
    if found is None:
        return False
    split = split_newest_days(training_rows(table, config), config.train.valid_days, purpose="validation",
                              setting="train.valid_days")
    return found == fingerprint(config, DataSpan.of(split.older, split.newest))


def _validation_score(model: MultiTaskModel, valid: ValidationRows, config: Config) -> tuple[float, dict[str, float]]:
    """Mean (``evaluation.selection_mean``) validation AP of ``heads.selection_targets`` (each
    training source's stream head on that source's rows: the paper's model-selection metric; or
    every head; or ``evaluation.selection_task``). It never sees the test split; a target without
    rows or positives is left out of the mean."""
    result = evaluate_batch(_probabilities(model, valid, config), model.task_names, valid.targets,
                            sources=config.sources, labels=labels_of(config.tasks), scored=selection_targets(config))
    details = {row.target: row.ap for row in result.rows if row.n > 0}
    return selection_score(details.values(), config.evaluation.selection_mean), details


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
            for _, chunk in validated_chunks(data, model.config, chunk_rows, require_labels=False):
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
    return rows


def evaluate_log(model: TrainedModel, data: str | Path | pa.Table, targets: Sequence[EvalTarget] | None = None,
                 segments: Sequence[str] = SEGMENTS, *, chunk_rows: int = 1_000_000,
                 on_chunk: Callable[[int], None] | None = None, informed: InformedOracle | None = None,
                 baseline: TrainedModel | None = None, baseline_name: str = "baseline") -> EvaluationResult:
    """``model.evaluate`` on a labelled log of any size, read and scored chunk by chunk: the same
    result as ``model.evaluate(load_log(data, model.config))``, bit for bit (``aligned_chunks``).

    Memory holds a few chunks (``chunk_rows`` rows, at least ``train.eval_batch_size``) and, for
    every row of the log, ``EvalRows``' columns: 4 bytes per scored head, 4 per label, 8 per
    true-probability column and 3 (39 bytes a row with the default tasks; 71 on a synthetic log,
    which has four true probabilities; 8 per label more with ``informed``). At the end the metrics
    work on one target at a time, with about 100 bytes a row more (135 with true probabilities). Each
    chunk is validated before it is scored: a bad row stops the evaluation with its position in the
    whole log. ``on_chunk`` gets the number of rows scored so far. ``informed`` (synthetic logs) adds
    the informed-oracle AP. ``baseline``, a model fitted and validated on the same days (the linear
    ``logreg`` preset, say), is scored on the same chunks and attached as ``result.baseline``.
    """
    targets = model.evaluation_targets() if targets is None else tuple(targets)
    if baseline is not None:
        same_training_days(model, baseline)
    parts: list[EvalRows] = []
    baseline_parts: list[EvalRows] = []
    rows = 0
    chunks = (chunk for _, chunk in validated_chunks(data, model.config, chunk_rows))
    for chunk in aligned_chunks(chunks, model.config.train.eval_batch_size):
        oracle = informed.probabilities(chunk) if informed is not None else None
        parts.append(model.evaluation_rows(chunk, targets, oracle))
        if baseline is not None:
            baseline_parts.append(baseline.evaluation_rows(chunk, baseline.evaluation_targets(), oracle))
        rows += chunk.num_rows
        if on_chunk is not None:
            on_chunk(rows)
    result = EvalRows.concatenate(parts).evaluate(targets, segments)
    if baseline is None:
        return result
    theirs = EvalRows.concatenate(baseline_parts).evaluate(baseline.evaluation_targets(), segments)
    return result.with_baseline(theirs, baseline_name)


def same_training_days(model: TrainedModel, baseline: TrainedModel) -> None:
    """Raise ``UnitargetError`` unless both models were fitted and validated on the same days, and both or neither
    refit on the validation days too (``train.refit``)."""
    spans = [m.record.span if m.record is not None else None for m in (model, baseline)]
    if spans[0] is None or spans[1] is None or not spans[0].same_days(spans[1]):
        days = ["none" if s is None else f"fit {list(s.train_range)}, validation {list(s.valid_range)}" for s in spans]
        raise UnitargetError(f"the baseline was not trained on the model's days ({days[1]} against {days[0]}): "
                             "train both on the same log")
    refit = [m.record.refit is not None for m in (model, baseline)]
    if refit[0] != refit[1]:
        raise UnitargetError(f"the {'model' if refit[0] else 'baseline'} was refit on its validation days and the "
                             f"{'baseline' if refit[0] else 'model'} was not (train.refit): train both the same way")
