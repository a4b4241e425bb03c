"""Heads as one concept: which task serves a label on a source and ad format, and which rows count
for a head. Every consumer asks here: the evaluator's targets (Table 1's Promotions AP and Ads AP,
the format study), model selection on validation, per-head AP, and the simulator's objective.

*Serving* a label is a ranking question: an ad impression of format f is scored, for label l, by

1. a task of label l whose ``formats`` include f (the format mask says it is f's head), else a task
   named ``<l>_<f>`` (a per-format head trained without the mask), else a task of label l without
   a format filter (one head for every format);
2. among those, one named for the source in ``evaluation.stream_task_for`` (stream only: the
   paper's promo_stream / ad_stream), then one mapped for another source (Fig. 2A: a
   promotions-only model's stream head scores ads), then one that learns from the source;
3. else the first.

The *rows of a head* are the rows that may update it in training (``training.tasks.TaskSet``): its
sources, its formats, its label observed. A head is judged on those (``head_targets``); models are
compared on rows fixed by the data alone (``channel_targets``), so every model of a table is
scored on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

from unitarget import contract
from unitarget.config import Config, TaskSpec
from unitarget.contract import AD_FORMATS
from unitarget.evaluation.evaluate import ADS_STREAM, PROMOTIONS_STREAM, EvalTarget


def _by_format(candidates: Sequence[TaskSpec], label: str, fmt: str) -> list[TaskSpec]:
    for rule in (
        lambda t: t.formats is not None and fmt in t.formats,
        lambda t: t.name == f"{label}_{fmt}",
        lambda t: t.formats is None,
    ):
        found = [t for t in candidates if rule(t)]
        if found:
            return found
    return []


def head_for(tasks: Sequence[TaskSpec], label: str, *, source: str | None = None, fmt: str | None = None,
             preferred: Sequence[str] = ()) -> str | None:
    """The task among ``tasks`` that serves ``label`` (on ``source`` / format ``fmt`` impressions
    when given), ``preferred`` names first; None when no task has that label (or that format)."""
    candidates = [t for t in tasks if t.label == label]
    if fmt is not None:
        candidates = _by_format(candidates, label, fmt)
    if source is not None:
        candidates = sorted(candidates, key=lambda t: source not in t.sources)  # stable
    names = [t.name for t in candidates]
    return next((name for name in preferred if name in names), names[0] if names else None)


def serving_head(config: Config, label: str, *, source: str | None = None, fmt: str | None = None) -> str | None:
    """``head_for`` on the configuration's tasks, with ``evaluation.stream_task_for`` preferred for
    stream on ``source`` (that source's mapping first, then the other sources' in order)."""
    preferred: list[str] = []
    if label == contract.REQUIRED_LABEL and source is not None:
        mapping = config.evaluation.stream_task_for
        preferred = [mapping[s] for s in (source, *config.sources) if s in mapping]
    return head_for(config.tasks, label, source=source, fmt=fmt, preferred=preferred)


def head_rows(spec: TaskSpec, sources: Sequence[str]) -> EvalTarget:
    """Head ``spec`` on the rows that may update it: its sources (None when it learns from all of
    ``sources``), its formats, its label observed."""
    own = spec.sources[0] if len(spec.sources) == 1 else tuple(spec.sources)
    return EvalTarget(spec.name, spec.name, spec.label, None if set(sources) <= set(spec.sources) else own,
                      spec.formats)


def head_targets(config: Config) -> tuple[EvalTarget, ...]:
    """Every head on its own rows, in task order (``pipeline.head_aps``)."""
    return tuple(head_rows(t, config.sources) for t in config.tasks)


def channel_targets(config: Config) -> tuple[EvalTarget, ...]:
    """The paper's two columns (stream on promotion impressions, stream on ad impressions, each
    scored by the head serving it), then every other head on its label over all impressions."""
    targets = [
        EvalTarget(name, head, contract.REQUIRED_LABEL, source)
        for name, source in ((PROMOTIONS_STREAM, contract.PROMOTIONS), (ADS_STREAM, contract.ADS))
        if (head := serving_head(config, contract.REQUIRED_LABEL, source=source)) is not None
    ]
    targets += [EvalTarget(t.name, t.name, t.label, None) for t in config.tasks if t.label != contract.REQUIRED_LABEL]
    return tuple(targets)


def selection_targets(config: Config) -> tuple[EvalTarget, ...]:
    """What model selection averages on validation (never the test days): for each source the
    model trains on, the stream head serving it (the paper's metric) on that source's rows of its
    formats; or ``evaluation.selection_task`` on each of its training sources (fine-tuning); or,
    with ``evaluation.selection_heads = "all"`` or for a model without a stream head, every head on
    its own rows."""
    chosen = config.evaluation.selection_task
    every_head = tuple(EvalTarget(f"ap_{t.name}", t.task, t.label, t.source, t.formats) for t in head_targets(config))
    if chosen is None and config.evaluation.selection_heads == "all":
        return every_head
    if chosen is not None:
        spec = next(t for t in config.tasks if t.name == chosen)
        pairs = [(s, spec) for s in spec.sources if s in config.training_sources]
    else:
        specs = {t.name: t for t in config.tasks}
        heads = [(s, serving_head(config, contract.REQUIRED_LABEL, source=s)) for s in config.training_sources]
        pairs = [(s, specs[h]) for s, h in heads if h is not None]
        if not pairs:  # no stream head (a click-only model, say): every head on its own rows
            return every_head
    return tuple(EvalTarget(f"ap_{s}_{t.name}", t.name, t.label, s, t.formats) for s, t in pairs)


def format_targets(tasks: Sequence[TaskSpec], label: str) -> tuple[EvalTarget, ...]:
    """``label`` on each ad format's impressions, scored by the head serving that format (formats
    without one are left out), in ``AD_FORMATS`` order."""
    found = ((fmt, head_for(tasks, label, fmt=fmt)) for fmt in AD_FORMATS)
    return tuple(EvalTarget(f"{label}_{fmt}", head, label, None, (fmt,)) for fmt, head in found if head is not None)


def objective_weights(config: Config, objective: Mapping[str, float], source: str) -> dict[str, float]:
    """Task -> weight of a value ``Σ_label w_label · P(label)`` on ``source`` impressions: each
    label's weight on the head serving it there. Raises KeyError naming a label no head serves."""
    weights: dict[str, float] = {}
    for label, weight in objective.items():
        head = serving_head(config, label, source=source)
        if head is None:
            raise KeyError(label)
        weights[head] = weights.get(head, 0.0) + weight
    return weights


def selection_score(aps: Iterable[float], mean: Literal["arithmetic", "geometric"] = "arithmetic") -> float:
    """The one number model selection maximises over the selection targets' validation APs: their
    mean, or (``"geometric"``) their geometric mean, under which every head's relative change counts
    the same whatever its AP's scale. Non-finite APs are left out; none left is ``-inf``."""
    finite = np.array([v for v in aps if np.isfinite(v)], dtype=float)
    if not finite.size:
        return float("-inf")
    if mean == "geometric":
        return float(np.exp(np.mean(np.log(np.maximum(finite, 1e-12)))))
    return float(np.mean(finite))
