"""The search space of ``unitarget tune``: a list of settings, each a dotted configuration key and its range.

To tune one more setting, add a ``Param`` to ``SEARCH_SPACE`` (and its row to docs/tuning.md): a float or int
range, uniform or log-uniform, or a list of choices. Every trial's configuration is the base configuration with
the drawn values merged in and validated again, so a key that does not exist, or a value the configuration refuses,
fails as any bad configuration does.

Left out on purpose: ``train.patience`` and ``train.max_epochs`` (a longer run can only raise the best validation
score, so a search would just find their upper bounds: they buy score with time, which the base configuration
decides), and the encoding settings (``features.*``), which would rebuild the encoded cache for every trial.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol


class Suggester(Protocol):
    """What a ``Param`` draws from: an ``optuna.Trial`` (optuna is imported only where a study runs)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        """A float in [low, high], log-uniform with ``log``."""
        ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        """An int in [low, high]."""
        ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """One of ``choices`` (scalars)."""
        ...


@dataclass(frozen=True)
class Param:
    """One tuned setting: ``key`` (e.g. ``optim.lr``), drawn from [``low``, ``high``] (``kind`` float or int;
    ``log``: log-uniform) or from ``choices``; ``why`` says what it trades off (the docs' table)."""

    key: str
    kind: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    why: str = ""

    def draw(self, trial: Suggester) -> Any:
        """Draw this setting for ``trial``: the value the study records under ``key`` (``value`` reads it)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, [_label(c) for c in self.choices])
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def value(self, recorded: Any) -> Any:
        """The configuration value of what the study recorded (a choice of widths is recorded as its label)."""
        if self.kind != "choice":
            return recorded
        labels = [_label(c) for c in self.choices]
        return self.choices[labels.index(recorded)]

    def describe(self) -> dict[str, Any]:
        """The range as JSON types: what a study keeps, to refuse resuming with another space."""
        if self.kind == "choice":
            return {"key": self.key, "choices": [_label(c) for c in self.choices]}
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log}


def _label(choice: Any) -> Any:
    """Optuna's choices are scalars: a tuple of widths is recorded as its JSON text, ``"[256, 128]"``."""
    return json.dumps(list(choice)) if isinstance(choice, (tuple, list)) else choice


SEARCH_SPACE: tuple[Param, ...] = (
    Param("optim.lr", "float", 3e-4, 1e-2, log=True, why="Adam's peak learning rate: the setting that matters most"),
    Param("optim.weight_decay", "float", 1e-8, 1e-3, log=True, why="L2 on every weight, embeddings included"),
    Param("model.dropout", "float", 0.0, 0.3, why="dropout in the shared MLP and towers"),
    Param("model.embedding_dim", "choice", choices=(8, 16, 32), why="width of every id's embedding"),
    Param("model.hidden", "choice", choices=((128, 64), (256, 128), (512, 256)), why="shared encoder MLP widths"),
    Param("model.tower_hidden", "choice", choices=((32,), (64,), (128,)), why="each task tower's MLP widths"),
    Param("train.batch_size", "choice", choices=(1024, 2048, 4096),
          why="rows per step: larger is faster per epoch, with fewer steps"),
    Param("model.wide", "choice", choices=(True, False), why="each task's linear term beside the deep part"),
    *(Param(f"model.embedding_dropout.{group}", "float", 0.0, 0.5,
            why=f"how often a {group} id reads as unknown in training: how much its embeddings may memorise")
      for group in ("user", "content", "creative")),
    Param("train.ema_decay", "choice", choices=(0.0, 0.99, 0.999),
          why="validate and publish an average of the weights; 0 = the last weights"),
    Param("sampling.mode", "choice", choices=("resample", "reweight"),
          why="balance the sources by repeating the smaller one's rows, or by weighting their losses"),
    Param("optim.id_lr_scale", "float", 0.3, 10.0, log=True,
          why="the id tables' learning rate over the rest's: how far a rare id's row can move in a pass"),
    Param("model.attention.history_loss", "float", 0.1, 10.0, log=True,
          why="how much the show embeddings learn from which shows the same listeners stream, beside the labels"),
)


def overrides(values: Mapping[str, Any], space: Sequence[Param]) -> dict[str, Any]:
    """Nested configuration overrides (``{"optim": {"lr": ...}}``) from a trial's recorded values, by dotted key."""
    nested: dict[str, Any] = {}
    for param in space:
        *tables, name = param.key.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
        target[name] = param.value(values[param.key])
    return nested


def suggest(trial: Suggester, space: Sequence[Param]) -> dict[str, Any]:
    """Draw every setting of ``space`` for ``trial``: its configuration overrides."""
    return overrides({p.key: p.draw(trial) for p in space}, space)
