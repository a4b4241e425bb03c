"""Typed, validated configuration: one TOML or YAML file, every key checked, unknown keys rejected.

Below the CLI each function receives only the sub-config it needs (``TrainConfig``, ``ModelConfig``
...). The defaults reproduce the paper's unified model: five tasks, both sources, the directional
mask of the data contract and source-balanced batches.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StrictFloat, StrictInt, ValidationError, field_validator, model_validator

from unitarget import contract
from unitarget.contract import Group, Kind
from unitarget.errors import ConfigError
from unitarget.model_config import AdFormat, ModelConfig, Strict
from unitarget.simulate_config import SimulateConfig


class TaskSpec(Strict):
    """One objective: a label column and the sources whose impressions may update it (m(s, t)).

    ``formats`` is CAMoE's adaptive loss mask: when set, only impressions whose ``format`` is one
    of them update the task (click_audio learns from audio ads only); ``None`` = every format.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    sources: tuple[str, ...] = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0.0, description="λ_t in the paper's loss")
    formats: tuple[AdFormat, ...] | None = Field(
        None, min_length=1, description="ad formats whose impressions may update this task; None = all"
    )


DEFAULT_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(name="promo_stream", label="stream", sources=(contract.PROMOTIONS,)),
    TaskSpec(name="ad_stream", label="stream", sources=(contract.ADS, contract.PROMOTIONS)),
    TaskSpec(name="click", label="click", sources=(contract.ADS, contract.PROMOTIONS)),
    TaskSpec(name="like", label="like", sources=(contract.ADS, contract.PROMOTIONS)),
    TaskSpec(name="follow", label="follow", sources=(contract.ADS, contract.PROMOTIONS)),
)


class ExtraFeature(Strict):
    """A column beyond the contract's standard ones, declared with its group and encoding."""

    name: str
    group: Group
    kind: Kind


class FeaturesConfig(Strict):
    """Which columns become features and how they are encoded: the standard contract columns, extra ones, exclusions and
    dropped groups, the vocabulary ``min_count``, hashed id spaces and the bag length cap."""

    use_standard: bool = Field(True, description="use every standard contract column that is present")
    extra: tuple[ExtraFeature, ...] = ()
    exclude: tuple[str, ...] = Field((), description="columns never used as features")
    drop_groups: tuple[Group, ...] = Field((), description="feature groups removed (ablations)")
    time_features: bool = Field(True, description="hour of day and weekday derived from ts")
    min_count: int = Field(2, ge=1, description="ids seen fewer times share the out-of-vocabulary row")
    min_count_by_group: dict[Group, Annotated[int, Field(ge=1)]] = Field(default_factory=dict, description=(
        "group -> min_count of its id features (a bag sharing a vocabulary: its owner's group); others: min_count"))
    hash_buckets: dict[str, int] = Field(
        default_factory=dict, description="feature -> number of hash buckets, for huge id spaces"
    )
    bag_max_len: int = Field(20, ge=1, description="list columns keep their first N items")


class SamplingConfig(Strict):
    """How mini-batches mix the sources: source-balanced with these shares (paper, section 3.3) or the natural mix of
    the log; balanced by resampling the rows or by reweighting their losses."""

    balanced: bool = Field(True, description="source-balanced mini-batches (paper, section 3.3)")
    ratios: dict[str, float] = Field(
        default_factory=lambda: {contract.ADS: 0.5, contract.PROMOTIONS: 0.5},
        description="share of each source in a batch; renormalised over the sources trained on",
    )
    mode: Literal["resample", "reweight"] = Field(
        "reweight", description="resample = every batch holds each source's share of rows (a small source's rows "
                                "repeat in an epoch); reweight = one shuffled pass over the natural mix, each row's "
                                "loss weighted by its source's ratio / natural share (mean 1). Without "
                                "balanced, or with one source, neither applies: the natural mix, unweighted")


class LossConfig(Strict):
    """How per-task losses are combined (training/balancing.py); λ_t comes from each TaskSpec."""

    method: Literal["static", "uncertainty", "gradnorm", "pcgrad"] = "static"
    gradnorm_alpha: float = Field(1.5, ge=0, description="GradNorm's restoring-force exponent α")


class OptimConfig(Strict):
    """Adam's learning rate and weight decay, and the schedule: linear warm-up (capped at a third of the run), then
    cosine decay to ``min_lr_ratio`` of the peak or a constant rate."""

    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    embedding_updates: Literal["dense", "lazy"] = Field(
        "dense", description="lazy: Adam steps only the embedding rows a batch touched (training/lazy_adam.py)")
    id_lr_scale: float = Field(1.0, gt=0, description=(
        "learning-rate multiplier of the id tables (every nn.Embedding: the deep embeddings, the wide and linear "
        "per-id weights). Adam moves a parameter about lr per step whatever its gradient, and an id's row steps "
        "only in the batches that hold the id, so in one pass a row moves at most (its rows) x lr: a listener with "
        "30 impressions, 0.06 logits at lr 0.002"))
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps, at most a third of the run's steps")
    decay: Literal["cosine", "none"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0, le=1)


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX), where autocast pays off."""
    import torch

    cpu = torch.cpu
    probes = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


class TrainConfig(Strict):
    """The training run: batch size, epochs, validation on the newest ``valid_days`` (how often, patience, an average
    of the weights), seed, threads, bf16 autocast, inference slices, checkpoint frequency, the data-parallel wait."""

    batch_size: int = Field(2048, ge=2)
    max_epochs: int = Field(6, ge=1)
    patience: int = Field(6, ge=1, description="validations without improvement before stopping: with validate_every "
                          "0.25, an epoch and a half's worth")
    validate_every: StrictInt | StrictFloat | None = Field(0.25, description=(
        "also validate inside an epoch: every N optimiser steps from its start (an integer >= 1; 1 = every step) or at "
        "each multiple of a fraction of its steps (a float in (0, 1]: 0.25 = 4 times); None or 1.0 = at epoch ends only"))
    ema_decay: float | None = Field(0.99, ge=0, lt=1, description="average the weights, decay min(ema_decay, (1 + n) / "
                                    "(10 + n)) at step n (training/ema.py): validated and published; 0 (or None) = off")
    valid_days: float = Field(7.0, gt=0, description="newest days of the training log held out for early stopping (shortened on a log too short for them: data.split)")
    refit: bool = Field(True, description=(
        "after model selection, train the published model again from scratch on every row, the validation days "
        "included, for as many epochs as the selected model had trained (pipeline.train): the newest days carry the "
        "campaigns and creatives the next days will show, which a model that never trained on them meets as unknown "
        "ids. Its validation figures are the selected model's; false = publish the selected model itself"))
    refit_average: bool = Field(True, description=(
        "with refit: publish the mean of the refit model's and the selected model's logits (models.average), an "
        "ensemble of two that costs no more training and twice the scoring; false = the refit model alone"))
    refit_anneal: bool = Field(False, description=(
        "with refit: the refit's learning rate decays (optim.decay) over the refit's own steps, which it knows before "
        "it starts, and so reaches optim.min_lr_ratio at its last step; false = the selection's schedule over "
        "max_epochs, where a model selected after one epoch of six ends at 0.93 of the peak rate"))
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = leave as is")
    bf16: bool | Literal["auto"] = Field(
        False, description="bfloat16 autocast for forward passes (training and scoring): true, false, or auto = "
                           "where the CPU has native bf16 (AVX-512 BF16 or AMX); emulated elsewhere, and slower")
    eval_batch_size: int = Field(8_192, ge=1, description="rows per inference slice; ~8K fits the CPU caches")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="also write the resumable checkpoint inside an epoch, every this many optimiser "
                                "steps since the last one; None = only at epoch ends. It never changes the weights")
    checkpoint_every_minutes: float | None = Field(
        None, gt=0, description="also write the resumable checkpoint inside an epoch once this many minutes have "
                                "passed since the last one (with checkpoint_every_steps: whichever comes first); "
                                "None = only at epoch ends")
    ddp_timeout_minutes: float = Field(
        30.0, gt=0, description="data-parallel training (torchrun): how long a rank waits in a collective for the "
                                "others, e.g. while rank 0 validates, before it gives up and exits non-zero. It "
                                "never changes the weights")

    @field_validator("validate_every")
    @classmethod
    def _steps_or_a_fraction(cls, every: int | float | None) -> int | float | None:
        if isinstance(every, int) and every < 1 or isinstance(every, float) and not 0 < every <= 1:
            raise ValueError(f"an integer is a number of optimiser steps (at least 1), a float a fraction of an "
                             f"epoch (in (0, 1]); got {every!r}")
        return every

    @property
    def use_bf16(self) -> bool:
        """``bf16`` resolved on this machine (``auto``: whether the CPU computes bfloat16 natively)."""
        return native_bf16() if self.bf16 == "auto" else bool(self.bf16)


class StreamConfig(Strict):
    """How ``train`` reads a log on disk (unitarget.streaming): chunk by chunk into an on-disk cache of encoded rows, then
    batches from shuffle windows of that cache. These sizes, not the log's length, set the memory a training needs."""

    chunk_rows: int = Field(65_536, ge=1_024, description="log rows read, validated and encoded at a time")
    block_rows: int = Field(16_384, ge=256, description="rows per block of the encoded cache: the unit of shuffling")
    shuffle_blocks: int = Field(
        16, ge=1, description="blocks drawn at random into each source's shuffle window; rows are shuffled within "
                              "the window (block_rows × shuffle_blocks rows per source in memory)")


class EvaluationConfig(Strict):
    """Which task scores each channel's stream: the paper's Promotions AP and Ads AP."""

    stream_task_for: dict[str, str] = Field(
        default_factory=lambda: {contract.PROMOTIONS: "promo_stream", contract.ADS: "ad_stream"}
    )
    test_days: float = Field(7.0, gt=0, description="newest days held out as the test set by reproduce and ablate (shortened on a log too short for them: data.split)")
    selection_task: str | None = Field(
        None, description="select the best epoch on this task's validation AP instead of the stream tasks'"
    )
    selection_heads: Literal["streams", "all"] = Field(
        "streams", description="what model selection scores on validation: the stream head of each training "
                               "source (the paper's metric) or every head on its own rows (ignored with "
                               "selection_task)")
    selection_mean: Literal["arithmetic", "geometric"] = Field(
        "arithmetic", description="how the selection targets' APs are combined: their mean, or their geometric "
                                  "mean, under which a head's relative change counts the same whatever its AP's "
                                  "scale (a 10 % gain on a 0.01-AP head as much as on a 0.1-AP one)")


class Config(Strict):
    """One whole experiment: sources, tasks and every section; validated as a whole, so tasks, sampling ratios,
    selection task and modality groups only name sources and tasks that exist."""

    sources: tuple[str, ...] = contract.DEFAULT_SOURCES
    tasks: tuple[TaskSpec, ...] = DEFAULT_TASKS
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    sampling: SamplingConfig = SamplingConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    stream: StreamConfig = StreamConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    simulate: SimulateConfig = SimulateConfig()

    @model_validator(mode="after")
    def _tasks_are_consistent(self) -> "Config":
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        if not self.tasks:
            raise ValueError("at least one task is required")
        for task in self.tasks:
            unknown = set(task.sources) - set(self.sources)
            if unknown:
                raise ValueError(f"task {task.name!r} learns from undeclared sources {sorted(unknown)}")
        if self.evaluation.selection_task not in (None, *names):
            raise ValueError(f"evaluation.selection_task {self.evaluation.selection_task!r} is not a task")
        if self.optim.embedding_updates == "lazy" and self.loss.method in ("gradnorm", "pcgrad"):
            raise ValueError(f"optim.embedding_updates = 'lazy' needs dense gradients that loss.method "
                             f"{self.loss.method!r} does not give; use 'dense' with it")
        unknown_ratio = set(self.sampling.ratios) - set(self.sources)
        if unknown_ratio:
            raise ValueError(f"sampling.ratios names undeclared sources {sorted(unknown_ratio)}")
        grouped = [name for members in self.model.experts.groups.values() for name in members]
        if set(grouped) - set(names):
            raise ValueError(f"model.experts.groups names unknown tasks {sorted(set(grouped) - set(names))}")
        if len(set(grouped)) != len(grouped):
            raise ValueError("model.experts.groups puts a task in more than one group")
        group_names = set(self.model.experts.groups) | set(self.model.experts.modality.values())
        if any(not g or g.startswith("_") for g in group_names):
            raise ValueError("modality group names must be non-empty and not start with '_'")
        categorical = {c.name for c in (*contract.STANDARD_FEATURES, *contract.DERIVED_TIME_FEATURES,
                                        *self.features.extra) if c.kind is Kind.CATEGORICAL}
        crossed = {f for pair in self.model.linear.crosses or () for f in pair}
        if crossed - categorical:
            raise ValueError(f"model.linear.crosses names non-categorical features {sorted(crossed - categorical)}")
        if self.model.encoder == "camoe" and self.model.experts.shared == 0:
            alone = [n for n in names if n not in self.task_groups()]
            if alone:
                raise ValueError(f"tasks {alone} belong to no modality group and camoe has no shared experts")
        return self

    @model_validator(mode="after")
    def _attention_names_features(self) -> "Config":
        attention = self.model.attention
        kinds = {c.name: c.kind for c in (*contract.STANDARD_FEATURES, *contract.DERIVED_TIME_FEATURES,
                                          *self.features.extra)}
        not_bags = [name for name in attention.bags if kinds.get(name) is not Kind.BAG]
        if not_bags:
            raise ValueError(f"model.attention.bags names columns that are not list (bag) features: {not_bags}")
        if attention.bags and kinds.get(attention.candidate) is not Kind.CATEGORICAL:
            raise ValueError(f"model.attention.candidate {attention.candidate!r} is not a categorical feature")
        return self

    def shared_vocabularies(self) -> dict[str, str]:
        """Bag -> the categorical feature whose vocabulary its tokens read (``FeatureEncoder``'s ``shared``): each
        bag of ``model.attention`` reads the candidate's, so a show in the history and the candidate show are one
        embedding row and target attention compares like with like. Empty when attention is off."""
        return dict.fromkeys(self.model.attention.bags, self.model.attention.candidate)

    def task_groups(self) -> dict[str, str]:
        """Task -> modality group for camoe: ``model.experts.groups`` if given, else each task whose
        formats all map to one group (``model.experts.modality``) joins it. Tasks absent from the
        result belong to no group and read the shared experts only."""
        explicit = self.model.experts.groups
        if explicit:
            return {task: group for group, members in explicit.items() for task in members}
        groups = {}
        for task in self.tasks:
            found = {self.model.experts.modality.get(f) for f in task.formats or ()}
            if len(found) == 1 and None not in found:
                groups[task.name] = found.pop()
        return groups

    @property
    def training_sources(self) -> tuple[str, ...]:
        """Sources whose impressions reach training: those at least one task learns from."""
        used = {s for t in self.tasks for s in t.sources}
        return tuple(s for s in self.sources if s in used)

    def to_json_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON types (tuples become lists, enums strings): what runs store and
        ``config_from_mapping`` reads back."""
        return json.loads(self.model_dump_json())


def parse_task_spec(spec: str) -> TaskSpec:
    """``NAME:label=COL,sources=S1[,S2...][,weight=W]`` -> TaskSpec (the CLI's --task syntax)."""
    name, _, rest = spec.partition(":")
    fields: dict[str, Any] = {"name": name.strip()}
    key = None
    for token in filter(None, (t.strip() for t in rest.split(","))):
        if "=" in token:
            key, value = (part.strip() for part in token.split("=", 1))
            fields[key] = [value] if key == "sources" else value
        elif key == "sources":
            fields["sources"].append(token)
        else:
            raise ConfigError(f"cannot read task spec {spec!r}: {token!r} is not KEY=VALUE")
    try:
        return TaskSpec.model_validate(fields)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"task spec {spec!r}")) from None


def read_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file, chosen by suffix; an unreadable,
    malformed or non-mapping file raises ``ConfigError`` (YAML through ``safe_load``, no code executed)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {path}: {err.strerror}") from err
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"configuration file {path} must end in .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"configuration file {path} is not valid {path.suffix[1:]}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    return data


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def config_from_mapping(data: dict[str, Any], origin: str = "configuration") -> Config:
    """Validate ``data`` into a ``Config``; validation errors become one ``ConfigError`` listing each problem's dotted
    location, with ``origin`` naming where the data came from."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a TOML/YAML/JSON file; ``None`` gives the defaults (the unified model)."""
    if path is None:
        return Config()
    path = Path(path)
    return config_from_mapping(read_mapping(path), origin=str(path))


def merge(config: Config, overrides: dict[str, Any]) -> Config:
    """Apply nested overrides (``{"train": {"seed": 3}}``) and validate the result again."""
    merged = deep_merge(config.to_json_dict(), overrides)
    return config_from_mapping(merged, origin="overrides")


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, section by section (a mapping of ``_REPLACED_WHOLE`` is replaced)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _REPLACED_WHOLE:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


#: Mappings that an override replaces rather than merges into (a preset's ratios or task map).
_REPLACED_WHOLE = frozenset({"ratios", "stream_task_for", "hash_buckets", "objective"})
