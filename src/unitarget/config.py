"""Typed, validated configuration: one TOML or YAML file, every key checked, unknown keys rejected.

Below the CLI each function receives only the sub-config it needs (``TrainConfig``, ``ModelConfig``
...). The defaults reproduce the paper's unified model: five tasks, both sources, the directional
mask of the data contract and source-balanced batches.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unitarget import contract
from unitarget.contract import Group, Kind
from unitarget.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    """One objective: a label column and the sources whose impressions may update it (m(s, t))."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    sources: tuple[str, ...] = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0.0, description="λ_t in the paper's loss")


DEFAULT_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(name="promo_stream", label="stream", sources=(contract.PROMOTIONS,)),
    TaskSpec(name="ad_stream", label="stream", sources=(contract.ADS, contract.PROMOTIONS)),
    TaskSpec(name="click", label="click", sources=(contract.ADS, contract.PROMOTIONS)),
    TaskSpec(name="like", label="like", sources=(contract.ADS, contract.PROMOTIONS)),
    TaskSpec(name="follow", label="follow", sources=(contract.ADS, contract.PROMOTIONS)),
)


class ExtraFeature(_Strict):
    """A column beyond the contract's standard ones, declared with its group and encoding."""

    name: str
    group: Group
    kind: Kind


class FeaturesConfig(_Strict):
    use_standard: bool = Field(True, description="use every standard contract column that is present")
    extra: tuple[ExtraFeature, ...] = ()
    exclude: tuple[str, ...] = Field((), description="columns never used as features")
    drop_groups: tuple[Group, ...] = Field((), description="feature groups removed (ablations)")
    time_features: bool = Field(True, description="hour of day and weekday derived from ts")
    min_count: int = Field(2, ge=1, description="ids seen fewer times share the out-of-vocabulary row")
    hash_buckets: dict[str, int] = Field(
        default_factory=dict, description="feature -> number of hash buckets, for huge id spaces"
    )
    bag_max_len: int = Field(20, ge=1, description="list columns keep their first N items")


class ModelConfig(_Strict):
    encoder: Literal["shared_bottom"] = "shared_bottom"
    embedding_dim: int = Field(16, ge=1)
    hidden: tuple[int, ...] = Field((256, 128), min_length=1, description="shared encoder MLP")
    tower_hidden: tuple[int, ...] = Field((64,), description="per-task tower MLP before the logit")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    batch_norm: bool = True


class SamplingConfig(_Strict):
    balanced: bool = Field(True, description="source-balanced mini-batches (paper, section 3.3)")
    ratios: dict[str, float] = Field(
        default_factory=lambda: {contract.ADS: 0.5, contract.PROMOTIONS: 0.5},
        description="share of each source in a batch; renormalised over the sources trained on",
    )


class LossConfig(_Strict):
    """How per-task losses are combined (training/balancing.py); λ_t comes from each TaskSpec."""

    method: Literal["static", "uncertainty", "gradnorm", "pcgrad"] = "static"
    gradnorm_alpha: float = Field(1.5, ge=0, description="GradNorm's restoring-force exponent α")


class OptimConfig(_Strict):
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(200, ge=0)
    decay: Literal["cosine", "none"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0, le=1)


class TrainConfig(_Strict):
    batch_size: int = Field(2048, ge=2)
    max_epochs: int = Field(6, ge=1)
    patience: int = Field(2, ge=1, description="epochs without validation improvement before stopping")
    valid_days: float = Field(7.0, gt=0, description="newest days of the training log held out for early stopping")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = leave as is")
    bf16: bool = Field(False, description="bfloat16 autocast for forward passes (training and scoring); fast only on CPUs with AVX-512 BF16 or AMX")
    eval_batch_size: int = Field(8_192, ge=1, description="rows per inference slice; ~8K fits the CPU caches")


class EvaluationConfig(_Strict):
    """Which task scores each channel's stream: the paper's Promotions AP and Ads AP."""

    stream_task_for: dict[str, str] = Field(
        default_factory=lambda: {contract.PROMOTIONS: "promo_stream", contract.ADS: "ad_stream"}
    )
    test_days: float = Field(7.0, gt=0, description="newest days held out as the test set by reproduce")
    selection_task: str | None = Field(
        None, description="select the best epoch on this task's validation AP instead of the stream tasks'"
    )


class Config(_Strict):
    sources: tuple[str, ...] = contract.DEFAULT_SOURCES
    tasks: tuple[TaskSpec, ...] = DEFAULT_TASKS
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    sampling: SamplingConfig = SamplingConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

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
        unknown_ratio = set(self.sampling.ratios) - set(self.sources)
        if unknown_ratio:
            raise ValueError(f"sampling.ratios names undeclared sources {sorted(unknown_ratio)}")
        return self

    @property
    def training_sources(self) -> tuple[str, ...]:
        """Sources whose impressions reach training: those at least one task learns from."""
        used = {s for t in self.tasks for s in t.sources}
        return tuple(s for s in self.sources if s in used)

    def stream_task(self, source: str) -> str:
        """The task that scores stream on ``source`` impressions, falling back to any stream task.

        The fallback is the paper's Fig. 2A: a promotions-only model's stream head scores ads.
        """
        names = {t.name for t in self.tasks}
        wanted = self.evaluation.stream_task_for.get(source)
        if wanted in names:
            return wanted
        for other_source in self.sources:
            candidate = self.evaluation.stream_task_for.get(other_source)
            if candidate in names:
                return candidate
        for task in self.tasks:
            if task.label == contract.REQUIRED_LABEL:
                return task.name
        return self.tasks[0].name

    def to_json_dict(self) -> dict[str, Any]:
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
    merged = _deep_merge(config.to_json_dict(), overrides)
    return config_from_mapping(merged, origin="overrides")


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _REPLACED_WHOLE:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


#: Mappings that an override replaces rather than merges into (a preset's ratios or task map).
_REPLACED_WHOLE = frozenset({"ratios", "stream_task_for", "hash_buckets"})
