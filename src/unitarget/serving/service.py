"""Scoring and ranking a request against one loaded model: what the HTTP routes call, minus HTTP.

score:  p[i, t] = probability of task t for candidate i (the user and context shared by all rows)
rank:   s[i] = p[i, task]  or  Σ_t w_t · p[i, t];  with ``per_price``, s[i] / price[i]
        (expected value per unit of cost); best first, ties kept in request order, top k.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from unitarget.serving.encoding import FeatureValueError
from unitarget.serving.runtime import ExportedModel
from unitarget.serving.schemas import Objective, RankRequest, ScoreRequest
from unitarget.serving.tables import CANDIDATE_FIELDS, CONTEXT_FIELDS, USER_FIELDS


class RequestError(Exception):
    """A well-formed request that cannot be served as asked; ``detail`` names the field (FastAPI style)."""

    def __init__(self, status: int, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = [{"loc": loc, "msg": message, "type": "value_error"}]


def encode(model: ExportedModel, request: ScoreRequest,
           now: datetime | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(ids, dense, OOV flags) of one request for ``model``; an extra feature it cannot read is a 422 for this
    request alone (before any batching)."""
    try:
        return model.encode_request(request.user, request.context, request.candidates, now)
    except FeatureValueError as err:
        raise RequestError(422, err.loc, str(err)) from None


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

    def candidate(self, i: int, probabilities: list[float]) -> dict[str, Any]:
        """Candidate ``i``'s answer: its index and id, ``probabilities`` keyed by task, and its OOV fields."""
        return {
            "index": i,
            "id": self.request.candidates[i].id,
            "probabilities": dict(zip(self.model.tasks, probabilities)),
            "oov_fields": [f for f, flags in self.candidate_oov.items() if flags[i]],
        }

    def envelope(self, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        """The response body around ``candidates``: model version, tasks and the request's shared OOV fields."""
        return {"model_version": self.model.version, "tasks": list(self.model.tasks),
                "oov_fields": self.shared_oov, "candidates": candidates}


def score(scored: Scored) -> dict[str, Any]:
    """The ``/v1/score`` body: every candidate's probabilities, in request order."""
    rows = scored.probabilities.tolist()
    return scored.envelope([scored.candidate(i, row) for i, row in enumerate(rows)])


def rank(scored: Scored, request: RankRequest) -> dict[str, Any]:
    """The ``/v1/rank`` body: candidates by objective value, best first, ties in request order (stable sort), the first
    ``top_k``, each with its ``score``."""
    values = objective_values(request.objective, scored.model.tasks, scored.probabilities, request)
    order = np.argsort(-values, kind="stable")[: request.top_k]
    rows = scored.probabilities.tolist()
    ranked = []
    for i in order.tolist():
        ranked.append(scored.candidate(i, rows[i]) | {"score": float(values[i])})
    return scored.envelope(ranked)


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
