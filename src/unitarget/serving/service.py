"""Scoring and ranking a request against one loaded model: what the HTTP routes call, minus HTTP.

score:  p[i, t] = probability of task t for candidate i (the user and context shared by all rows)
rank:   s[i] = p[i, task]  or  Σ_t w_t · p[i, t];  with ``per_price``, s[i] / price[i]
        (expected value per unit of cost); best first, ties kept in request order, top k.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from unitarget.serving import responses
from unitarget.serving.encoding import FeatureValueError, Part
from unitarget.serving.runtime import ExportedModel
from unitarget.serving.schemas import Objective, RankRequest, ScoreRequest
from unitarget.serving.tables import CANDIDATE_FIELDS, CONTEXT_FIELDS, USER_FIELDS


class RequestError(Exception):
    """A well-formed request that cannot be served as asked; ``detail`` names the field (FastAPI style)."""

    def __init__(self, status: int, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = [{"loc": loc, "msg": message, "type": "value_error"}]


def prepare(model: ExportedModel, request: ScoreRequest, now: datetime | None = None) -> Part:
    """``request`` ready to be encoded in any batch: its extra features checked (one the model cannot read is a 422
    for this request alone, before any batching) and its time fixed (the context's, else ``now``, else the clock)."""
    try:
        model.request_encoder.check_features(request.user, request.context, request.candidates)
    except FeatureValueError as err:
        raise RequestError(422, err.loc, str(err)) from None
    return Part.of(request.user, request.context, request.candidates, now)


class Scored:
    """Probabilities and OOV flags of one request's candidates."""

    def __init__(self, model: ExportedModel, request: ScoreRequest, probabilities: np.ndarray,
                 flags: dict[str, np.ndarray]) -> None:
        self.model = model
        self.request = request
        self.probabilities = probabilities
        shared = [f for f in (*USER_FIELDS, *CONTEXT_FIELDS) if f in flags]
        self.shared_oov = [f for f in shared if flags[f][0]]
        self.candidate_oov = {f: flags[f] for f in CANDIDATE_FIELDS if f in flags and flags[f].any()}

    def oov_counts(self) -> dict[str, int]:
        """Field -> values scored through an OOV row (user and context fields once per request)."""
        return {**{f: 1 for f in self.shared_oov}, **{f: int(v.sum()) for f, v in self.candidate_oov.items()}}

    def body(self, order: Sequence[int], scores: np.ndarray | None = None) -> bytes:
        """The response body (JSON) with the candidates ``order`` in that order (``scores``: theirs, ranked)."""
        probabilities = self.probabilities if scores is None else self.probabilities[np.asarray(order, dtype=np.intp)]
        ids = [c.id for c in self.request.candidates]
        candidates = responses.candidate_objects(self.model.tasks, order, ids, probabilities, self.candidate_oov,
                                                 scores)
        return responses.body(self.model.version, self.model.tasks, self.shared_oov, candidates)


def score(scored: Scored) -> bytes:
    """The ``/v1/score`` body: every candidate's probabilities, in request order."""
    return scored.body(range(len(scored.probabilities)))


def rank(scored: Scored, request: RankRequest) -> bytes:
    """The ``/v1/rank`` body: candidates by objective value, best first, ties in request order (stable sort), the first
    ``top_k``, each with its ``score``."""
    values = objective_values(request.objective, scored.model.tasks, scored.probabilities, request)
    order = np.argsort(-values, kind="stable")[: request.top_k]
    return scored.body(order.tolist(), values[order])


def objective_values(objective: Objective, tasks: tuple[str, ...], probabilities: np.ndarray,
                     request: RankRequest) -> np.ndarray:
    """(N,) float64 objective of every candidate; unknown tasks or missing prices are named."""
    loc: list[str | int] = ["body", "objective"]
    weights = {objective.task: 1.0} if objective.task is not None else dict(objective.weights or {})
    unknown = [t for t in weights if t not in tasks]
    if unknown:
        field = "task" if objective.task is not None else "weights"
        raise RequestError(422, [*loc, field], f"unknown task(s) {unknown}; the model's tasks are {list(tasks)}")
    w = np.array([weights.get(t, 0.0) for t in tasks], dtype=np.float64)
    values = probabilities.astype(np.float64) @ w
    if objective.per_price:
        prices = [c.price for c in request.candidates]
        missing = [i for i, p in enumerate(prices) if p is None]
        if missing:
            raise RequestError(422, ["body", "candidates", missing[0], "price"],
                               f"objective.per_price needs a price on every candidate; "
                               f"{len(missing)} have none (first: candidate {missing[0]})")
        values = values / np.array(prices, dtype=np.float64)
    if not np.all(np.isfinite(values)):  # huge weights over tiny prices
        raise RequestError(422, [*loc], "the objective overflows (weights too large or prices too small)")
    return values
