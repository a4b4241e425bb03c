"""``train.refit_average``: the published model is the mean of two models' logits, the refit's and the selected one's.

The refit (``training.refit``) trains on every row with an encoder fitted on them all; the model selected on
validation was trained on the older rows with an encoder fitted on those. Both are worth keeping: the two saw
different rows, started from different weights and stopped at different points, so their errors are partly
independent, and an average of independent errors is smaller (a two-model ensemble, at twice the scoring cost; the
training costs nothing more, the selected model exists already).

Both members read the refit encoder's inputs, so serving still encodes a request once and runs one graph.
``InputMap`` re-encodes them for the selected model inside the graph: each table row of the refit encoder's
vocabularies becomes the row the selection's vocabularies gave the same id (its OOV row for an id it never saw),
each bag keeps the tokens the selection's shorter bag kept, and each log-count input is moved to the selection's
mean and scale. A vocabulary fitted on more rows keeps every id of one fitted on fewer, so nothing else is needed.
The one input not mapped exactly is a missing count, which each encoder reads as its own mean: the selected model
reads the refit encoder's mean in its own scale, a value near zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from unitarget.data.batch import Features
from unitarget.data.encoders import PADDING_ROW
from unitarget.data.features import FeatureEncoder, FeatureLayout
from unitarget.data.vocabulary import Vocabulary
from unitarget.errors import UnitargetError
from unitarget.models.multitask import MultiTaskModel

#: state_dict prefixes of an average (``load_average`` tells one from a single model's weights by them)
MEMBERS, INPUTS = "members", "inputs"


class InputMap(nn.Module):
    """Features of one encoder -> the same rows as an older encoder of the same columns encoded them.

    rows:    (R,) the older encoder's table row for each table row of the newer one (padding stays padding)
    columns: (C_old,) which column of the newer ``ids`` each column of the older ones reads
    scale, shift: (D,) dense_old = dense * scale + shift (log-count inputs re-standardised; vectors unchanged)
    """

    def __init__(self, rows: torch.Tensor, columns: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("rows", rows.to(torch.int32))  # table rows, as ``Features.ids`` holds them
        self.register_buffer("columns", columns.to(torch.int64))
        self.register_buffer("scale", scale.to(torch.float32))
        self.register_buffer("shift", shift.to(torch.float32))

    @classmethod
    def empty(cls, table_rows: int, ids_width: int, dense_dim: int) -> "InputMap":
        """A map of these sizes to be filled by ``load_state_dict``."""
        return cls(torch.zeros(table_rows), torch.zeros(ids_width), torch.ones(dense_dim), torch.zeros(dense_dim))

    @classmethod
    def between(cls, newer: FeatureEncoder, older: FeatureEncoder) -> "InputMap":
        """The map from ``newer``'s inputs to ``older``'s: fitted on the same columns, ``newer`` on a superset of the
        rows (the refit's encoder and the selection's)."""
        new, old = newer.layout_, older.layout_
        if (new.categorical, [b[0] for b in new.bags], new.dense) != (old.categorical, [b[0] for b in old.bags],
                                                                      old.dense):
            raise UnitargetError("cannot average two models that read different feature columns")
        rows = np.full(new.table_rows, PADDING_ROW, dtype=np.int64)  # the padding row stays padding
        for name in (*new.categorical, *(b[0] for b in new.bags)):
            if name in newer.shared_:
                continue  # a shared bag reads its owner's block, mapped with the owner
            vocabulary = newer.vocabularies_[name]
            local = np.arange(vocabulary.size)  # a hashed vocabulary: the same buckets
            if isinstance(vocabulary, Vocabulary):  # row 1 + k holds values_[k], row 0 is OOV
                local = np.concatenate([[0], older.vocabularies_[name].transform(vocabulary.values_)])
            rows[new.offsets[name]:new.offsets[name] + vocabulary.size] = local + old.offsets[name]
        columns = list(range(new.n_categorical))
        for (_, start, _), (_, old_start, old_stop) in zip(new.bags, old.bags):
            columns += range(start, start + old_stop - old_start)  # the older encoder's first tokens
        if len(columns) != old.ids_width or any(c >= new.ids_width for c in columns):
            raise UnitargetError("cannot average a model whose bags are longer than the published encoder's")
        scale, shift = np.ones(new.dense_dim, dtype=np.float32), np.zeros(new.dense_dim, dtype=np.float32)
        column = 0
        for name, width in new.dense:
            if name in newer.numeric_stats_:
                (mean, std), (old_mean, old_std) = newer.numeric_stats_[name], older.numeric_stats_[name]
                scale[column], shift[column] = std / old_std, (mean - old_mean) / old_std
            column += width
        return cls(torch.from_numpy(rows), torch.tensor(columns), torch.from_numpy(scale), torch.from_numpy(shift))

    def layout_of_older(self, newer: FeatureLayout) -> FeatureLayout:
        """The older encoder's layout, read back from the map and the newer layout: each feature's block starts where
        its OOV row maps, the table ends after the largest mapped row (every older id is a newer one too), and each
        bag is as long as the columns it reads."""
        lengths = [sum(start <= c < stop for c in self.columns.tolist()) for _, start, stop in newer.bags]
        bags, start = [], newer.n_categorical
        for (name, _, _), length in zip(newer.bags, lengths):
            bags.append((name, start, start + length))
            start += length
        return replace(newer, bags=tuple(bags),
                       offsets={name: int(self.rows[row]) for name, row in newer.offsets.items()},
                       table_rows=int(self.rows.max()) + 1)

    def forward(self, features: Features) -> Features:
        """``features`` as the older encoder encodes the same rows."""
        ids = self.rows[features.ids[:, self.columns].long()].to(features.ids.dtype)  # a gather in the ONNX graph
        return Features(ids, features.dense * self.scale + self.shift)


class LogitAverage(nn.Module):
    """Models, each behind the map of its inputs (none for the first, which reads them as they are); each task's logit
    is the mean over the members that score it, so its probability is σ(mean logit), not the mean probability.

    The first member scores every task, in the output's column order; the others score some of them. An average
    holds members of different tasks after ``finetune``: the new head is trained on the first member, and the old
    heads stay the average they were.
    """

    def __init__(self, members: Sequence[MultiTaskModel], inputs: Sequence[InputMap | None]) -> None:
        super().__init__()
        tasks = members[0].task_names
        if any(set(m.task_names) - set(tasks) for m in members[1:]):
            raise UnitargetError("cannot average models whose tasks the first model does not score")
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList(nn.Identity() if i is None else i for i in inputs)
        # (T_k, T) placement of member k's logits in the output columns, each divided by the task's member count
        placements = [torch.zeros(len(m.task_names), len(tasks)) for m in members]
        for placement, member in zip(placements, members):
            for row, name in enumerate(member.task_names):
                placement[row, tasks.index(name)] = 1.0
        counts = sum(placement.sum(0) for placement in placements)
        for k, placement in enumerate(placements):
            self.register_buffer(f"placement{k}", placement / counts, persistent=False)

    @property
    def task_names(self) -> list[str]:
        """Every task, in the first member's (the output's) column order."""
        return self.members[0].task_names

    def with_members(self, members: Sequence[MultiTaskModel]) -> "LogitAverage":
        """An average of ``members`` behind this average's input maps, member for member."""
        return LogitAverage(members, [None if isinstance(i, nn.Identity) else i for i in self.inputs])

    def forward(self, features: Features) -> torch.Tensor:
        """(B, T) mean logits of every task over the members that score it."""
        return sum(m(i(features)) @ getattr(self, f"placement{k}")
                   for k, (m, i) in enumerate(zip(self.members, self.inputs)))

    def forward_tasks(self, features: Features, tasks: Sequence[int]) -> torch.Tensor:
        """(B, len(tasks)) mean logits of the given tasks (an average computes every task's, then keeps these)."""
        return self.forward(features)[:, list(tasks)]


#: what a run publishes: one model, or an average of models (``train.refit_average``)
PublishedModel = MultiTaskModel | LogitAverage


def members(model: PublishedModel) -> list[MultiTaskModel]:
    """The models an average holds, the one reading the published encoder's inputs as they are first; or the model
    itself."""
    return list(model.members) if isinstance(model, LogitAverage) else [model]


def first_member(model: PublishedModel) -> MultiTaskModel:
    """The model itself, or an average's first member (what ``finetune`` starts a new head from)."""
    return members(model)[0]


def with_first_member(model: PublishedModel, first: MultiTaskModel) -> PublishedModel:
    """``model`` with ``first`` in place of its first member (of a single model: ``first`` itself); the other members
    keep their inputs and tasks (``finetune`` of an average: the new head is the first member's alone)."""
    if not isinstance(model, LogitAverage):
        return first
    return model.with_members([first, *list(model.members)[1:]])


def is_average(weights: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state_dict is a ``LogitAverage``'s."""
    return any(key.startswith(f"{MEMBERS}.") for key in weights)


def load_average(weights: Mapping[str, torch.Tensor], layout: FeatureLayout,
                 build: Callable[[FeatureLayout, list[str]], MultiTaskModel], tasks: Sequence[str]) -> LogitAverage:
    """The ``LogitAverage`` whose state_dict is ``weights``, its first member reading ``layout`` and scoring
    ``tasks``: each other member's layout is read back from its input map (``InputMap.layout_of_older``) and its
    tasks from its towers' weights, so a run stores no second encoder."""
    count = 1 + max(int(key.split(".")[1]) for key in weights if key.startswith(f"{MEMBERS}."))
    members, inputs = [build(layout, list(tasks))], [None]
    for k in range(1, count):
        prefix = f"{INPUTS}.{k}."
        shapes = {name: weights[prefix + name].shape[0] for name in ("rows", "columns", "scale")}
        input_map = InputMap.empty(shapes["rows"], shapes["columns"], shapes["scale"])
        input_map.load_state_dict({name: weights[prefix + name] for name in ("rows", "columns", "scale", "shift")})
        scored = {key.split(".")[3] for key in weights if key.startswith(f"{MEMBERS}.{k}.towers.")}
        members.append(build(input_map.layout_of_older(layout), [t for t in tasks if t in scored]))
        inputs.append(input_map)
    return LogitAverage(members, inputs)
