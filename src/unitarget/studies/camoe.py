"""The CAMoE study (KDD 2025): per-format CTR across audio, video and display ads, architecture by
architecture, each over several seeds, scored per format with the head that serves each format.

Every arm trains on the same ad impressions of the older days (its own newest ``train.valid_days``
for model selection) and is scored on the same newest ``evaluation.test_days``. An arm is one or
more models: the single-task baseline is three models, one click head per format. Features are
encoded once per label set and shared by all arms; models train through the core loop
(``training.loop.fit``) and select their epoch on the mean click AP over formats on validation.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from unitarget import contract
from unitarget.config import Config, TaskSpec, merge
from unitarget.contract import AD_FORMATS
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureEncoder
from unitarget.data.split import split_newest_days
from unitarget.evaluation.formats import ALL_FORMATS, FormatRow, evaluate_formats
from unitarget.models import MultiTaskModel, build_model
from unitarget.scoring import predict_probabilities
from unitarget.training.balancing import StaticWeights
from unitarget.training.loop import fit
from unitarget.training.sampling import NaturalSampler
from unitarget.training.tasks import TaskSet

LABELS = ("click", "stream")
#: The paper's CAMoE: modality groups, DCN-v2 crosses on the embedded input (low rank), format mask.
CAMOE_MODEL: dict[str, Any] = {"encoder": "camoe", "cross": {"layers": 2, "rank": 64}}


def format_tasks(labels: Sequence[str] = LABELS, *, masked: bool = True,
                 formats: Sequence[str] = AD_FORMATS) -> list[dict[str, Any]]:
    """``<label>_<format>`` tasks on ad impressions; ``masked``: each learns from its format only."""
    return [{"name": f"{label}_{fmt}", "label": label, "sources": [contract.ADS],
             "formats": [fmt] if masked else None} for label in labels for fmt in formats]


@dataclass(frozen=True)
class Arm:
    """One row of the study: configuration overrides per model it trains (most arms: one)."""

    name: str
    display: str
    models: tuple[dict[str, Any], ...]
    ablation: bool = False

    def configs(self, base: Config, seed: int) -> list[Config]:
        return [merge(merge(base, overrides), {"train": {"seed": seed}}) for overrides in self.models]


def camoe_arms() -> list[Arm]:
    """Baselines (single-task, pooled and per-format multi-task, MMoE, PLE), CAMoE, its ablations."""
    pooled = [{"name": label, "label": label, "sources": [contract.ADS]} for label in LABELS]
    per_format = {"tasks": format_tasks()}
    sb = {"encoder": "shared_bottom"}

    def camoe(**model: Any) -> tuple[dict[str, Any], ...]:
        return ({**per_format, "model": _merge_dicts(CAMOE_MODEL, model)},)

    return [
        Arm("single-task", "single-task per format (3 click models)",
            tuple({"tasks": format_tasks(("click",), formats=[f]), "model": sb} for f in AD_FORMATS)),
        Arm("mtl-pooled", "multi-task, click + stream heads shared by all formats",
            ({"tasks": pooled, "model": sb},)),
        Arm("mtl-per-format", "multi-task, per-format heads, shared bottom", ({**per_format, "model": sb},)),
        Arm("mmoe", "MMoE, per-format heads", ({**per_format, "model": {"encoder": "mmoe"}},)),
        Arm("ple", "PLE (2 levels), per-format heads",
            ({**per_format, "model": {"encoder": "ple", "experts": {"levels": 2}}},)),
        Arm("camoe", "CAMoE: modality groups + DCN-v2 + format mask", camoe()),
        Arm("camoe-no-cross", "CAMoE without cross layers", camoe(cross={"layers": 0}), True),
        Arm("camoe-no-experts", "CAMoE without experts: shared bottom + DCN-v2 + format mask",
            ({**per_format, "model": {**sb, "cross": CAMOE_MODEL["cross"]}},), True),
        Arm("camoe-no-mask", "CAMoE without the format mask",  # same groups, named since no task has formats
            ({"tasks": format_tasks(masked=False), "model": _merge_dicts(CAMOE_MODEL, {"experts": {"groups": {
                "audio": [f"{label}_audio" for label in LABELS],
                "visual": [f"{label}_{f}" for label in LABELS for f in ("video", "display")]}}})},), True),
        Arm("camoe-experts-2-1", "CAMoE, 2 shared + 1 per group",
            camoe(experts={"shared": 2, "specific": 1}), True),
        Arm("camoe-experts-8-2", "CAMoE, 8 shared + 2 per group",
            camoe(experts={"shared": 8, "specific": 2}), True),
        Arm("camoe-groups-placement", "CAMoE, groups in-stream (audio + video) and display",
            camoe(experts={"modality": {"audio": "in_stream", "video": "in_stream", "display": "display"}}),
            True),
    ]


def _merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, nested dicts key by key."""
    out = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge_dicts(out[key], value) if nested else value
    return out


@dataclass(frozen=True)
class ArmRun:
    """One arm trained with one seed: its per-format rows on the test days."""

    arm: str
    seed: int
    rows: tuple[FormatRow, ...]
    seconds: float
    parameters: int


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
        older, test = split_newest_days(ads, config.evaluation.test_days, purpose="testing")
        if rows is not None and rows < older.num_rows:
            keep = np.sort(np.random.default_rng(seed).choice(older.num_rows, size=rows, replace=False))
            older = older.take(pa.array(keep))
        fit_rows, valid = split_newest_days(older, config.train.valid_days, purpose="validation")
        return cls(fit_rows, valid, test)


class EncodedStudy:
    """Features fitted once on the fit rows; batches cached per label set (the Batch label columns)."""

    def __init__(self, data: StudyData, config: Config) -> None:
        self.data, self.cache = data, {}
        self.encoder = FeatureEncoder(config.features, config.sources, LABELS).fit(data.fit)

    def get(self, labels: tuple[str, ...]) -> tuple[FeatureEncoder, Batch, Batch, Batch]:
        if labels not in self.cache:
            enc = self.encoder.with_labels(labels)
            self.cache[labels] = (enc, enc.transform(self.data.fit), enc.transform(self.data.valid),
                                  enc.transform(self.data.test))
        return self.cache[labels]


def _label_arrays(batch: Batch, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """label -> (n,) float with NaN where not observed."""
    y = batch.targets.labels.numpy().astype(np.float64)
    y[~batch.targets.label_mask.numpy()] = np.nan
    return {label: y[:, j] for j, label in enumerate(labels)}


def batch_formats(batch: Batch) -> np.ndarray:
    """(n,) format name of each row of an encoded batch (None for null or other formats)."""
    names = np.array([*AD_FORMATS, None], dtype=object)
    return names[batch.targets.format.numpy()]


def score_formats(models: Sequence[tuple[Config, MultiTaskModel]], batch: Batch, labels: tuple[str, ...],
                  truths: dict[str, np.ndarray] | None = None) -> list[FormatRow]:
    """Per-format rows of the heads of one or more models (the single-task arm has three)."""
    predictions: dict[str, np.ndarray] = {}
    specs: list[TaskSpec] = []
    for config, model in models:
        probs = predict_probabilities(model, batch.features, config.train.eval_batch_size, config.train.bf16)
        predictions |= {task: probs[:, j] for j, task in enumerate(model.task_names)}
        specs += list(config.tasks)
    wanted = [label for label in LABELS if any(t.label == label for t in specs)]
    return evaluate_formats(predictions, _label_arrays(batch, labels), batch_formats(batch), specs, wanted,
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
    """Build, initialise at base rates and train one model of an arm; returns its best epoch."""
    tasks = TaskSet(config.tasks, config.sources)
    encoder, train_batch, valid_batch, _ = encoded.get(tasks.labels)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, encoder.layout_, tasks.names, config.task_groups())
    for tower, rate in zip(model.towers.values(), tasks.base_rates(train_batch.targets)):
        tower.start_at_rate(rate)
    with tempfile.TemporaryDirectory(prefix="unitarget-camoe-") as run_dir:
        fit(model, tasks, train_batch,
            sampler=NaturalSampler(len(train_batch), config.train.batch_size, config.train.seed),
            balancer=StaticWeights(tasks.weights),
            validate=_selection_score(config, tasks.labels, valid_batch),
            train_config=config.train, optim_config=config.optim, run_dir=Path(run_dir))
    return model


def run_arms(encoded: EncodedStudy, config: Config, arms: Sequence[Arm], seeds: Sequence[int],
             log: Callable[[str], None] = lambda _: None, done: Sequence[ArmRun] = (),
             on_run: Callable[[ArmRun], None] = lambda _: None) -> list[ArmRun]:
    """Train every arm with every seed (seed-major, so a stopped study has whole seeds); score each
    on the test days per format. Pairs already in ``done`` are kept, not trained again."""
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
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


def run_camoe_study(
    data: str | Path | pa.Table,
    out_dir: Path,
    config: Config,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    arms: Sequence[Arm] | None = None,
    rows: int | None = None,
    cost_steps: int = 30,
    resume: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Run the study on ``data`` and write into ``out_dir``: ``CAMOE.md`` (the report),
    ``camoe_table.md``/``.csv`` (AP per arm, label and format, mean ± std over seeds),
    ``camoe_runs.csv`` (every seed), ``camoe_pareto.png`` and ``camoe_cost.md``/``.csv``.

    Each finished (arm, seed) is appended to ``camoe_runs.jsonl`` at once; ``resume`` keeps the
    ones found there (same data, size and configuration assumed) and trains only the rest."""
    import os
    import platform

    from unitarget.io import atomic_write_text
    from unitarget.pipeline import load_log
    from unitarget.reports.camoe import StudyFacts, write_camoe_outputs
    from unitarget.studies.cost import encoder_costs

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arms = list(arms or camoe_arms())
    table = load_log(data, config)
    study = StudyData.split(table, config, rows)
    log(f"ad impressions: {study.fit.num_rows:,} fit, {study.valid.num_rows:,} validation, "
        f"{study.test.num_rows:,} test")
    encoded = EncodedStudy(study, config)
    journal = out_dir / "camoe_runs.jsonl"
    done = read_journal(journal) if resume and journal.is_file() else []
    if not resume:
        journal.unlink(missing_ok=True)
    runs = run_arms(encoded, config, arms, seeds, log, done, on_run=lambda run: append_journal(journal, run))
    log("measuring the cost of each encoder")
    # (the facts are saved as camoe_facts.json before anything is rendered: re-render with
    # reports.camoe.facts_from_json + write_camoe_outputs without training again)
    encoder, fit_batch, _, _ = encoded.get(LABELS)
    costs = encoder_costs(merge(config, {"tasks": format_tasks()}), encoder.layout_, fit_batch,
                          steps=cost_steps)
    facts = StudyFacts(
        arms=arms, runs=runs, costs=costs, seeds=tuple(seeds), log_rows=table.num_rows, sampled_rows=rows,
        split={"fit": study.fit.num_rows, "validation": study.valid.num_rows, "test": study.test.num_rows},
        config=config, seconds=time.perf_counter() - started,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
                f"({torch.get_num_threads()} threads)",
    )
    report = write_camoe_outputs(facts, out_dir)
    atomic_write_text(out_dir / "camoe_config.json", config.model_dump_json(indent=2) + "\n")
    return report


def append_journal(path: Path, run: ArmRun) -> None:
    """Append one finished (arm, seed) as a JSON line (NaN written as null)."""
    import json
    import math
    from dataclasses import asdict

    record = asdict(run)
    record["rows"] = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
                      for row in record["rows"]]
    with open(path, "a") as fh:
        fh.write(json.dumps(record, allow_nan=False) + "\n")


def read_journal(path: Path) -> list[ArmRun]:
    import json

    def row(values: dict[str, Any]) -> FormatRow:
        undefined = {k: float("nan") for k in ("ap", "oracle_ap") if values[k] is None}
        return FormatRow(**{**values, **undefined})

    runs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [ArmRun(**{**r, "rows": tuple(row(v) for v in r["rows"])}) for r in runs]
