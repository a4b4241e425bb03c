"""The informed oracle: the world's true probability, with each show's own latent effects known only
as well as the impressions logged before the test days reveal them.

The full oracle (the log's ``true_<label>`` columns) knows every latent parameter of the world,
so it ranks a show nobody has seen as well as the most exposed one. A model cannot: what it knows
of a show's own quality, or of the part of its taste its content does not predict, it learned from
that show's logged impressions. The informed oracle knows what the full oracle knows except four
groups of effects, which it knows as their posterior mode given the training-period labels:

* q_s, each show's own quality; prior N(a + b log10(1 + S_s) + c new_s, σ_q²), the least-squares
  line of quality on the show's popularity level S over all shows of the world, and its residual
  variance (the world makes quality and popularity correlate, and a model sees popularity);
* b_p, each publisher's quality, pooled over its shows; prior N(0, publisher_quality_sd²);
* c_r, each creative's quality, from its ad impressions; prior N(0, creative_quality_sd²);
* r_s = v_s − m_s, the part of a show's taste vector its genre and topics do not predict; prior
  N(0, τ² I) with m_s = β (√g G_genre + √t T_topics), β and τ² fitted by least squares over all
  shows (the generator's own construction of v, ``population.generate_shows``).

Each effect enters the chain's conditional logits linearly (``synth.labels``: quality through the
show-quality term, c_r through the channel term, r_s through the affinity u·v/√K), so the log
posterior — every training row's click, stream | click branch, like | stream branch and follow |
stream branch as logistic observations, plus the Gaussian priors — is concave. Its mode is found
by sweeps of joint Newton steps per show and exact conditional modes per publisher
(``evaluation.posterior``). With no training rows every effect sits at its prior mean: the
show-blind oracle. As a show's exposure grows its estimate tends to the truth and the informed oracle to the
full one.

What makes it an approximation of the Bayes limit, not the limit itself:

1. Plug-in: the probability is the chain's marginal at the posterior mode, not the posterior
   predictive mean (which would average the marginal over the posterior's spread).
2. Optimistic: the users' latent parameters (taste, propensities), every global effect, and the
   genre and topic taste vectors are known exactly. A model learns a user's from that user's own
   impressions and history, a few dozen impressions on a typical log against a show's hundreds:
   ``learn_users`` estimates them too (``evaluation.user_posterior``), which measures how much of
   the gap that is.
3. Slightly pessimistic: which users the logging policy chose for a show (it favours high
   affinity) also carries a little information about the show's taste; the oracle ignores it.
4. The popularity prior uses the show's level S (``base_streams``), the log's ``show_streams_30d``
   without its slow drift and launch ramp.

So a model may come close to it or, on a slice, just past it; the gap between the full oracle and
the informed one is what the data cannot tell, the gap between the informed oracle and a model
what the model leaves unlearned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.errors import UnitargetError
from unitarget.evaluation.posterior import fit_effects
from unitarget.evaluation.user_posterior import fit_user_effects
from unitarget.evaluation.world_rows import COLUMNS, label_arrays, placements_of
from unitarget.io import read_log
from unitarget.synth import World
from unitarget.synth.placements import Placements
from unitarget.validation import normalise_ts

_CHECK_ROWS = 1_000  # rows of each scored table compared with its true_<label> columns


@dataclass(frozen=True)
class InformedOracle:
    """The informed oracle of one world: its probabilities for any rows of that world's log."""

    truth: World
    informed: World  # ``truth`` with the effects estimated from the training rows
    exposure: np.ndarray  # (n_shows,) training impressions of each show

    @classmethod
    def fit(cls, world: World, training: pa.Table, *, learn_users: bool = False) -> InformedOracle:
        """Fit on ``training``: contract rows of ``world``'s log (the impressions before the test days).

        ``learn_users`` also estimates each user's propensities (engagement, promotion and format response, like and
        follow) and taste from the same rows and the listening histories instead of knowing them
        (``user_posterior``): shows given the true users, users given those shows, then shows again given the
        estimated users."""
        p = placements_of(world, normalise_ts(training))
        observed = label_arrays(training)
        effects = fit_effects(world, p, observed)
        base = world
        if learn_users:
            base = fit_user_effects(effects.applied_to(world), p, observed).applied_to(world)
            effects = fit_effects(base, p, observed)
        return cls(world, effects.applied_to(base), np.bincount(p.show, minlength=world.n_shows))

    @classmethod
    def for_log(cls, dataset: str | Path, data: str | Path | pa.Table) -> InformedOracle:
        """The informed oracle for evaluating ``data``: fitted on the rows of the synthetic dataset
        ``dataset`` (what ``unitarget synth --out`` wrote: ``impressions.parquet`` and ``world/``)
        logged before ``data``'s first impression."""
        dataset = Path(dataset)
        if not (dataset / "world").is_dir():
            raise UnitargetError(f"{dataset} has no world/: pass the directory `unitarget synth --out` wrote")
        world = World.load(dataset / "world")
        log = normalise_ts(read_log(dataset / "impressions.parquet", columns=list(COLUMNS)))
        evaluated = data if isinstance(data, pa.Table) else read_log(data, columns=[contract.TS])
        first = pc.min(normalise_ts(evaluated).column(contract.TS))
        return cls.fit(world, log.filter(pc.less(log.column(contract.TS), first)))

    def probabilities(self, table: pa.Table) -> dict[str, np.ndarray]:
        """label -> (n,) informed-oracle probability of each row of ``table`` (NaN where the label
        cannot be observed). Rows that carry ``true_<label>`` columns are checked against the world:
        a log drawn from another world is an error, not a silently wrong oracle."""
        p = placements_of(self.truth, normalise_ts(table))
        self._check(table, p)
        return self.informed.marginals(p)

    def _check(self, table: pa.Table, p: Placements) -> None:
        column = contract.true_probability_column(contract.REQUIRED_LABEL)
        if column not in table.column_names or not len(p):
            return
        head = p.slice(0, _CHECK_ROWS)
        logged = table.column(column).slice(0, _CHECK_ROWS).to_numpy(zero_copy_only=False)
        if not np.allclose(self.truth.marginals(head)[contract.REQUIRED_LABEL], logged, rtol=1e-9, atol=1e-12):
            raise UnitargetError("the log's true probabilities disagree with the world: it was not drawn from it")
