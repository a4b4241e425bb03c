"""The paper's ablations (issue 3): every switch of the unified model, each over several seeds.

Every variant is the ``unified`` preset (or another Table 1 preset) plus configuration overrides,
trained on the same older days and evaluated on the same newest days. Results are relative AP
changes against ``promo-baseline`` trained with the same seed, summarised as mean ± standard
deviation over seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unitarget import contract
from unitarget.config import Config
from unitarget.contract import Group
from unitarget.evaluation import ADS_STREAM, LESS_STREAMED, PROMOTIONS_STREAM, EvaluationResult
from unitarget.evaluation.heads import channel_targets
from unitarget.evaluation.informed import InformedOracle
from unitarget.evaluation.segments import ALL
from unitarget.pipeline import TrainedModel, load_model, train, trained_on
from unitarget.presets import ABLATION_VARIANTS, BASELINE_PRESET, Variant
from unitarget.runs import TRAINING_FILE
from unitarget.tracking import NO_RUN, TrackedRun, record_metrics
from unitarget.training.hooks import ChainedHooks, SilentHooks, TrainingHooks

#: Ads AP on ad impressions of shows with little ad history but some promotion history in the
#: training days: the slice the paper's cold-start story rests on.
COLD_AD_SLICE = "ads_stream_cold_ad_history"
#: "Little ad history": fewer ad impressions than this in the training days.
COLD_AD_HISTORY_MAX = 50


def paper_variants() -> list[Variant]:
    """Every row of the study, from the catalogue in ``presets`` (a new list: callers filter it)."""
    return list(ABLATION_VARIANTS)


@dataclass
class AblationRun:
    """One trained (variant, seed) of the ablation study: its evaluation, its Ads AP on the cold ad-history slice, and
    its seconds."""

    variant: Variant
    seed: int
    result: EvaluationResult
    cold_slice_ap: float
    seconds: float


def cold_ad_history_mask(train_rows: pa.Table, test_rows: pa.Table) -> np.ndarray:
    """Test ad impressions whose show had < COLD_AD_HISTORY_MAX ad and ≥ 1 promotion impressions
    in the training days."""
    counts = (
        pa.table({"show": train_rows.column(contract.SHOW_ID).cast(pa.string()),
                  "ad": pc.equal(train_rows.column(contract.SOURCE).cast(pa.string()), contract.ADS).cast(pa.int64())})
        .group_by("show").aggregate([("ad", "sum"), ("ad", "count")])
    )
    ads, total = counts.column("ad_sum").to_numpy(), counts.column("ad_count").to_numpy()
    cold_shows = pc.filter(counts.column("show"), pa.array((ads < COLD_AD_HISTORY_MAX) & (total > ads)))
    is_ad = pc.equal(test_rows.column(contract.SOURCE).cast(pa.string()), contract.ADS)
    in_cold = pc.is_in(test_rows.column(contract.SHOW_ID).cast(pa.string()), value_set=cold_shows)
    return pc.and_(is_ad, in_cold).to_numpy(zero_copy_only=False)


def run_ablation(
    train_rows: pa.Table,
    test_rows: pa.Table,
    out_dir: Path,
    config: Config,
    *,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    hooks_for: Callable[[str], TrainingHooks] = lambda _: SilentHooks(),
    log: Callable[[str], None] = lambda _: None,
    trained_runs: Mapping[tuple[str, int], Path] = {},
    informed: InformedOracle | None = None,
    tracking: TrackedRun = NO_RUN,
) -> list[AblationRun]:
    """Train (or reuse) every variant with every seed into ``ablation_run_dir`` and evaluate it on
    ``test_rows`` (with the informed oracle's AP when ``informed`` is given).

    A finished run trained with exactly the variant's configuration on these ``train_rows`` is
    evaluated instead of retrained: its own directory from an earlier, interrupted study, or the
    directory ``trained_runs`` maps (variant name, seed) to (``reproduce`` passes its Table 1
    runs). Training is deterministic for a configuration and data, so reusing gives the same
    weights in a fraction of the time. Each (variant, seed) is a run nested in ``tracking``: its
    configuration, its validations (when trained here), its final and test metrics, its ``training.json``.
    """
    import time

    cold = cold_ad_history_mask(train_rows, test_rows)
    runs = []
    for seed in seeds:
        for variant in variants:
            started = time.perf_counter()
            variant_config = variant.config(config, seed)
            run_dir = ablation_run_dir(out_dir, variant.name, seed)
            done = [d for d in (trained_runs.get((variant.name, seed)), run_dir)
                    if d is not None and trained_on(d, train_rows, variant_config)]
            with tracking.child(run_dir.name, variant_config.to_json_dict()) as tracked:
                tracked.set_tags({"variant": variant.name, "seed": str(seed)})
                if done:
                    log(f"seed {seed}: {variant.name} reuses the identical run {done[0]}")
                    tracked.set_tags({"reused_run": str(done[0])})
                    trained = load_model(done[0])
                else:
                    log(f"seed {seed}: training {variant.name}")
                    hooks = ChainedHooks(hooks_for(f"{variant.name} s{seed}"), tracked.hooks)
                    trained = train(train_rows, run_dir, variant_config, hooks=hooks)
                result = trained.evaluate(test_rows, informed=informed)
                runs.append(AblationRun(variant, seed, result, _slice_ap(trained, test_rows, cold),
                                        time.perf_counter() - started))
                tracked.log_metrics({**(record_metrics(trained.record) if trained.record else {}),
                                     **test_metrics(runs[-1])})
                tracked.log_artifacts([(done[0] if done else run_dir) / TRAINING_FILE])
    return runs


def ablation_run_dir(out_dir: Path, variant: str, seed: int) -> Path:
    """Where ``run_ablation`` trains (variant, seed): ``out_dir/runs/<variant>-seed<seed>``."""
    return out_dir / "runs" / f"{variant}-seed{seed}"


def _slice_ap(trained: TrainedModel, test_rows: pa.Table, rows: np.ndarray) -> float:
    """Ads AP (the paper's column, scored by the head serving stream on ads) on the ``rows`` slice."""
    ads_stream = [t for t in channel_targets(trained.config) if t.name == ADS_STREAM]
    result = trained.evaluate(test_rows.filter(pa.array(rows)), ads_stream, segments=(ALL,))
    return result.ap(ADS_STREAM) if ads_stream else float("nan")


#: (column key, target, segment) summarised per variant.
SUMMARY_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("Promotions AP", PROMOTIONS_STREAM, "all"),
    ("Ads AP", ADS_STREAM, "all"),
    ("Ads AP, less-streamed", ADS_STREAM, LESS_STREAMED),
    ("Ads AP, cold ad history", COLD_AD_SLICE, "all"),
    ("click AP", "click", "all"),
    ("like AP", "like", "all"),
    ("follow AP", "follow", "all"),
)


def run_ap(run: AblationRun, target: str, segment: str) -> float:
    """AP of ``run`` in one summary column: the stored cold-slice AP for ``COLD_AD_SLICE``, NaN for a target the run did
    not evaluate."""
    if target == COLD_AD_SLICE:
        return run.cold_slice_ap
    return run.result.ap(target, segment) if target in run.result.targets else float("nan")


def test_metrics(run: AblationRun) -> dict[str, float]:
    """The run's AP in every summary column on the test days, keyed ``test/<column>`` (``test/ads_ap``)."""
    return {"test/" + column.lower().replace(",", "").replace(" ", "_"): run_ap(run, target, segment)
            for column, target, segment in SUMMARY_TARGETS}


def summarise(runs: Sequence[AblationRun]) -> list[dict[str, Any]]:
    """One row per (variant, column): mean and std over seeds of AP and of its relative change
    against the same seed's promotions baseline."""
    baseline = {r.seed: r for r in runs if r.variant.name == BASELINE_PRESET}
    rows = []
    for name in dict.fromkeys(r.variant.name for r in runs):
        mine = [r for r in runs if r.variant.name == name]
        variant = mine[0].variant
        for column, target, segment in SUMMARY_TARGETS:
            aps = np.array([run_ap(r, target, segment) for r in mine])
            bases = np.array([run_ap(baseline[r.seed], target, segment) if r.seed in baseline else np.nan for r in mine])
            changes = (aps - bases) / bases
            rows.append({
                "variant": variant.name, "display": variant.display, "column": column,
                "ap_mean": float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
                "change_mean": float(np.nanmean(changes)) if np.isfinite(changes).any() else float("nan"),
                "change_std": float(np.nanstd(changes, ddof=1)) if np.isfinite(changes).sum() > 1 else float("nan"),
                "seeds": int(np.isfinite(aps).sum()),
            })
    return rows


@dataclass(frozen=True)
class PairedChange:
    """AP of ``variant`` against ``reference`` over the seeds both ran: the per-seed difference
    d_s = AP_variant,s − AP_reference,s, its mean, its standard error, and the mean as a fraction
    of the reference's mean AP. Pairing by seed removes what the seeds share (split, world)."""

    mean: float
    standard_error: float
    reference_mean: float
    seeds: int

    @property
    def relative(self) -> float:
        """The mean paired difference as a fraction of the reference's mean AP (NaN if that is 0)."""
        return self.mean / self.reference_mean if self.reference_mean else float("nan")

    @property
    def relative_error(self) -> float:
        """The standard error of the mean difference on the same relative scale (NaN if undefined)."""
        return self.standard_error / self.reference_mean if self.reference_mean else float("nan")

    @property
    def separable(self) -> bool:
        """|mean| beyond two standard errors (needs at least two seeds)."""
        return self.seeds >= 2 and abs(self.mean) > 2 * self.standard_error


def paired_change(runs: Sequence[AblationRun], variant: str, reference: str, target: str,
                  segment: str = "all") -> PairedChange | None:
    """None when the two rows share no seed with a finite AP."""
    by_seed = {(r.variant.name, r.seed): run_ap(r, target, segment) for r in runs}
    pairs = [(by_seed[(variant, s)], by_seed[(reference, s)]) for v, s in by_seed
             if v == variant and (reference, s) in by_seed]
    pairs = [(a, b) for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
    if not pairs:
        return None
    diffs, refs = np.array([a - b for a, b in pairs]), np.array([b for _, b in pairs])
    se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return PairedChange(float(diffs.mean()), se, float(refs.mean()), len(diffs))


#: (the paper's claim, variant, reference, target, the sign of variant − reference it predicts).
#: Sections 3.3 and 4.3 of the WSDM paper, and its abstract on feature groups.
CLAIMS: tuple[tuple[str, str, str, str, int], ...] = (
    ("the directional mask keeps ad signals from shaping the promotion heads: without it, Promotions AP "
     "falls", "no-mask", "unified", PROMOTIONS_STREAM, -1),
    ("reversing the mask (ads update promotions, promotions no longer update ads) lowers Promotions AP",
     "mask-reversed", "unified", PROMOTIONS_STREAM, -1),
    ("reversing the mask lowers Ads AP (promotion signals aid the sparser ad objectives)",
     "mask-reversed", "unified", ADS_STREAM, -1),
    ("source-balanced batches keep the model from collapsing toward the larger source: on the natural "
     "mix Promotions AP falls", "natural-mix", "unified", PROMOTIONS_STREAM, -1),
    ("ancillary heads help ads: Ads Stream + ANC beats Ads Stream head-only on Ads AP",
     "ads-anc", "ads-stream-only", ADS_STREAM, +1),
    ("ancillary heads cannot replace promotions data: Ads Stream + ANC falls behind the promotions "
     "baseline on Promotions AP", "ads-anc", "promo-baseline", PROMOTIONS_STREAM, -1),
    *((f"the {g.value} features contribute: without them, {label} falls", f"without-{g.value}", "unified",
       target, -1) for g in Group for target, label in ((PROMOTIONS_STREAM, "Promotions AP"),
                                                        (ADS_STREAM, "Ads AP"))),
)
#: The loss balancers, each judged against the unified model's static weights.
LOSS_METHODS = ("loss-uncertainty", "loss-gradnorm", "loss-pcgrad")

Verdict = Literal["one seed", "not separable", "agrees", "disagrees"]


def judge(change: PairedChange, expected: int) -> Verdict:
    """Whether a paired change bears out a claim that predicts its sign: only a change beyond two
    standard errors of the paired seed differences can agree or disagree."""
    if change.seeds < 2:
        return "one seed"
    if not change.separable:
        return "not separable"
    return "agrees" if np.sign(change.mean) == expected else "disagrees"
