"""Off-policy evaluation of a trained model as a policy, on a uniform-random logging policy's log.

At each impression of ``source`` the *model policy* shows the candidate (a show of the impression's
campaign) its stream head scores highest for that impression's user and context; its click rate is
estimated with IPS, SNIPS and DR from the logged ``propensity``. Each row is one decision at one
position: the policy may pick the same show at the three positions of one page (duplicates across
positions are not prevented). DR's reward model is the same trained model, so DR is not independent
of the policy it evaluates. The uniform-random target policy is the known-policy check: its IPS
value is the log's own click rate. docs/offpolicy.md has the formulas and limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.errors import UnitargetError
from unitarget.evaluation.candidates import (CandidateSets, campaign_keys, candidate_sets, counterfactual_rows,
                                            item_columns)
from unitarget.evaluation.heads import serving_head
from unitarget.evaluation.offpolicy import (N_RESAMPLES, Estimate, doubly_robust, greedy_policy, ips, on_policy,
                                            snips, softmax_policy, uniform_policy)
from unitarget.pipeline import TrainedModel, load_log, load_model

__all__ = ["GREEDY", "UNIFORM", "OPEResult", "PolicyValue", "TargetPolicy", "off_policy_report", "score_policies"]

GREEDY = "model, greedy"
UNIFORM = "uniform random"
#: Counterfactual rows (impressions × candidates) scored at once: bounds memory, whatever the log's size.
CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class TargetPolicy:
    """A policy to evaluate: a name and how it turns an (impressions, candidates) score matrix into
    choice probabilities."""

    name: str
    probabilities: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PolicyValue:
    """One target policy's estimated click rate by each estimator (with intervals)."""

    policy: str
    ips: Estimate
    snips: Estimate
    dr: Estimate


@dataclass(frozen=True)
class OPEResult:
    """What ``unitarget ope`` reports: the evaluated source, the head that scored it, the counts, the
    target policies' estimates and each source's logged (on-policy) click rate for comparison."""

    source: str
    head: str
    impressions: int
    clicks: int
    #: campaign key -> number of candidate shows
    candidates: dict[str, int]
    policies: tuple[PolicyValue, ...]
    #: source -> its logged policy's own mean ``stream``
    logged: dict[str, Estimate]
    level: float
    n_resamples: int
    seed: int
    notes: tuple[str, ...]


def off_policy_report(model_run: str | Path, log: str | Path | pa.Table, *, source: str = contract.ADS,
                      seed: int = 0, n_resamples: int = N_RESAMPLES, level: float = 0.95,
                      temperature: float | None = None, chunk_rows: int = CHUNK_ROWS) -> OPEResult:
    """Estimate, on ``source``'s impressions of ``log`` (logged by a uniform-random policy with a
    ``propensity`` column), the click rate of the greedy model policy (and of a softmax over the
    head's logits at ``temperature``, if given) and of the uniform-random policy, beside every source's logged rate."""
    trained = load_model(model_run)
    table = load_log(log, trained.config)
    head = serving_head(trained.config, contract.REQUIRED_LABEL, source=source)
    if head is None:
        raise UnitargetError(f"the model has no head serving {contract.REQUIRED_LABEL!r} on {source!r}")
    rows, notes = evaluated_rows(table, source)
    sets = candidate_sets(rows, item_columns(trained.encoder.columns_))
    notes += _propensity_notes(rows, sets) + _in_sample_notes(trained, rows)
    policies = [TargetPolicy(GREEDY, greedy_policy), TargetPolicy(UNIFORM, lambda s: uniform_policy(*s.shape))]
    if temperature is not None:
        policies.append(TargetPolicy(f"model, softmax (T={temperature:g})", partial(_softmax_of_logits,
                                                                                  temperature=temperature)))
    q_logged, scored = score_policies(trained, rows, sets, head, policies, chunk_rows)
    r, p = _rewards(rows), _propensities(rows)
    options = {"seed": seed, "n_resamples": n_resamples, "level": level}
    values = tuple(PolicyValue(name, ips(r, p, pi, **options), snips(r, p, pi, **options),
                               doubly_robust(r, p, pi, q_logged, q_pi, **options))
                   for name, (pi, q_pi) in scored.items())
    logged = {}
    for name in trained.config.sources:
        own = _observed(table.filter(pc.equal(table.column(contract.SOURCE), name)))
        if own.num_rows:
            logged[name] = on_policy(_rewards(own), **options)
    return OPEResult(source, head, rows.num_rows, int(r.sum()), {k: v.num_rows for k, v in sets.items.items()},
                     values, logged, level, n_resamples, seed, tuple(notes))


def evaluated_rows(table: pa.Table, source: str) -> tuple[pa.Table, list[str]]:
    """``source``'s impressions with an observed ``stream``, after checking the log can be evaluated:
    a ``propensity`` column, known on every such row and constant within each campaign (the logging
    policy is assumed uniform over each campaign's candidates)."""
    if contract.PROPENSITY not in table.column_names:
        raise UnitargetError(f"the log has no {contract.PROPENSITY!r} column: off-policy evaluation needs the "
                             "logging policy's probability of each shown item (docs/data-contract.md)")
    on_source = table.filter(pc.equal(table.column(contract.SOURCE), source))
    rows = _observed(on_source)
    notes = []
    if rows.num_rows < on_source.num_rows:
        notes.append(f"{on_source.num_rows - rows.num_rows:,} {source} impressions without an observed "
                     f"{contract.REQUIRED_LABEL!r} are left out")
    if rows.num_rows == 0:
        raise UnitargetError(f"the log has no {source!r} impressions with an observed {contract.REQUIRED_LABEL!r}")
    missing = np.flatnonzero(rows.column(contract.PROPENSITY).is_null().to_numpy(zero_copy_only=False))
    if missing.size:
        raise UnitargetError(f"column {contract.PROPENSITY!r}: {missing.size} {source} impressions have an unknown "
                             f"(null) propensity; first rows (among them) {missing[:5].tolist()}")
    campaign, p = campaign_keys(rows), _propensities(rows)
    for key in np.unique(campaign):
        mine = p[campaign == key]
        if mine.min() != mine.max():
            where = f"campaign {key!r}" if key else f"source {source!r}"
            raise UnitargetError(f"column {contract.PROPENSITY!r}: non-constant on {where} (from {mine.min():g} to "
                                 f"{mine.max():g}), but its logging policy is assumed uniform-random")
    return rows, notes


def score_policies(trained: TrainedModel, rows: pa.Table, sets: CandidateSets, head: str,
                   policies: list[TargetPolicy], chunk_rows: int = CHUNK_ROWS,
                   ) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Score every candidate of every impression with ``head``, ``chunk_rows`` counterfactual rows
    at a time; return q̂ of each logged action and, per policy, its probability of the logged action
    and its expected q̂ (what IPS, SNIPS and DR need), so no impressions × candidates matrix outlives
    its chunk."""
    column = trained.model.task_names.index(head)
    q_logged = np.empty(rows.num_rows)
    scored = {p.name: (np.empty(rows.num_rows), np.empty(rows.num_rows)) for p in policies}
    for key, items in sets.items.items():
        impressions, k = sets.impressions_of(key), items.num_rows
        step = max(1, chunk_rows // k)
        for start in range(0, impressions.size, step):
            at = impressions[start:start + step]
            table = counterfactual_rows(rows.take(pa.array(at)), items)
            scores = trained.probabilities(table)[:, column].astype(np.float64).reshape(at.size, k)
            logged = sets.logged[at]
            q_logged[at] = scores[np.arange(at.size), logged]
            for policy in policies:
                probs = policy.probabilities(scores)
                scored[policy.name][0][at] = probs[np.arange(at.size), logged]
                scored[policy.name][1][at] = (probs * scores).sum(axis=1)
    return q_logged, scored


def _softmax_of_logits(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over the head's logits (not its probabilities), so the temperature reads the same
    whatever the base rate."""
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    return softmax_policy(np.log(clipped) - np.log1p(-clipped), temperature)


def _propensity_notes(rows: pa.Table, sets: CandidateSets) -> list[str]:
    """A note for each campaign whose propensity is not 1 / its number of candidates in the log
    (some items never shown, or a logging policy over a different set)."""
    p, notes = _propensities(rows), []
    for key, items in sets.items.items():
        logged = float(p[sets.campaign == key][0])
        if not np.isclose(logged, 1.0 / items.num_rows):
            where = f"campaign {key!r}" if key else "the source"
            notes.append(f"{where}: propensity {logged:g} but {items.num_rows} candidate shows in the log "
                         f"(1/{items.num_rows} = {1.0 / items.num_rows:g})")
    return notes


def _in_sample_notes(trained: TrainedModel, rows: pa.Table) -> list[str]:
    """A warning when evaluated impressions are ones the model was fitted or selected on: a
    policy scored on its own training clicks looks far better than it would be on new traffic."""
    if trained.record is None:
        return []
    newest_seen = datetime.fromisoformat(trained.record.span.valid_range[1])
    seen = int(pc.sum(pc.less_equal(rows.column(contract.TS), pa.scalar(newest_seen, rows.column(contract.TS).type)))
               .as_py() or 0)
    if seen == 0:
        return []
    return [f"{seen:,} of the {rows.num_rows:,} evaluated impressions are not newer than the model's training "
            f"and validation data (up to {trained.record.span.valid_range[1]}): in-sample, so the model policy's "
            f"estimates are optimistic; evaluate on newer days (e.g. the test split)"]


def _observed(table: pa.Table) -> pa.Table:
    return table.filter(table.column(contract.REQUIRED_LABEL).is_valid())


def _rewards(table: pa.Table) -> np.ndarray:
    return table.column(contract.REQUIRED_LABEL).cast(pa.float64()).to_numpy(zero_copy_only=False)


def _propensities(table: pa.Table) -> np.ndarray:
    return table.column(contract.PROPENSITY).cast(pa.float64()).to_numpy(zero_copy_only=False)
