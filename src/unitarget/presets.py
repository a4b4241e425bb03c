"""The catalogue of named setups: the paper's Table 1 presets, the variants the ablation study and
the main job train beside them, and the paper's Table 1 figures.

A Table 1 preset only changes which tasks exist and which sources each learns from; the data a
model sees follows from that (``Config.training_sources``). Everything else — features,
architecture, optimiser — stays as configured, so the rows of Table 1 differ in the task setup
alone. The one exception is ``logreg``, the linear baseline reported beside them: the unified
tasks on a logistic-regression model (``models.linear``) with a small L2 penalty. A variant
is a preset plus configuration overrides. Every setup is defined here once, so the main job's
diagnostic and the ablation row of the same name are the same configuration (and ``reproduce
--full`` can reuse one run for both).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from unitarget import contract
from unitarget.config import Config, deep_merge, merge
from unitarget.contract import Group
from unitarget.errors import ConfigError

_P = [contract.PROMOTIONS]
_A = [contract.ADS]
_AP = [contract.ADS, contract.PROMOTIONS]
_ANCILLARY = ("click", "like", "follow")


def _tasks(*specs: tuple[str, str, list[str]]) -> list[dict[str, Any]]:
    return [{"name": name, "label": label, "sources": sources} for name, label, sources in specs]


def unified_tasks(promo_sources: list[str], ad_sources: list[str]) -> list[dict[str, Any]]:
    """The unified model's five tasks; the sources of its two stream heads set the directional
    mask (the paper's: promotions update ``ad_stream`` too, ads never update ``promo_stream``)."""
    return _tasks(("promo_stream", "stream", promo_sources), ("ad_stream", "stream", ad_sources),
                  *((t, t, _AP) for t in _ANCILLARY))


#: The logreg preset's L2 penalty (``optim.weight_decay``): small, so it tames the hashed crosses
#: seen a handful of times without shrinking the frequent ids.
LOGREG_L2 = 1e-6

#: What the defaults add to the paper's configuration (chosen on validation across the worlds of
#: benchmarks/robustness.py, docs/robustness.md): component -> (what it is, the override that takes it away).
DEFAULT_COMPONENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "attention": ("target attention over the history and follows", {"model": {"attention": {"bags": []}}}),
    "co-listening": ("the co-listening objective on the attended bags' embeddings",
                     {"model": {"attention": {"history_loss": 0.0}}}),
    "wide": ("Wide & Deep linear terms", {"model": {"wide": False}}),
    "dropout": ("dropout 0.3 in the MLP and towers", {"model": {"dropout": 0.0}}),
    "embedding-dropout": ("embedding dropout 0.3 (user, content, creative ids)",
                          {"model": {"embedding_dropout": {"user": 0.0, "content": 0.0, "creative": 0.0}}}),
    "validation-in-epoch": ("validation 4 times an epoch, patience an epoch and a half of them",
                            {"train": {"validate_every": 1.0, "patience": 2}}),
    "source-reweighting": ("sources balanced by loss weights over one natural pass (not by repeating rows)",
                           {"sampling": {"mode": "resample"}}),
    "short-warmup": ("a 50-step learning-rate warm-up (the paper's configuration: 200)", {"optim": {"warmup_steps": 200}}),
    "weight-average": ("validation and the published model on a moving average of the weights (decay 0.99)",
                       {"train": {"ema_decay": 0.0}}),
    "refit": ("the published model trained again on every row, validation days included, for the selected epochs",
              {"train": {"refit": False}}),
    "refit-average": ("the published model the mean of the refit's and the selected model's logits",
                      {"train": {"refit_average": False}}),
}


def _without_defaults() -> dict[str, Any]:
    """The overrides that take every component of ``DEFAULT_COMPONENTS`` away: the paper's configuration."""
    merged: dict[str, Any] = {}
    for _, overrides in DEFAULT_COMPONENTS.values():
        merged = deep_merge(merged, overrides)
    return merged


#: name -> (display name used in reports, overrides)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "promo-baseline": (
        "Promotions baseline (Fig. 2A)",
        {"tasks": _tasks(("promo_stream", "stream", _P), *((t, t, _P) for t in _ANCILLARY))},
    ),
    "promo-stream-only": (
        "Promo Stream head-only",
        {"tasks": _tasks(("promo_stream", "stream", _P))},
    ),
    "ads-stream-only": (
        "Ads Stream head-only",
        {"tasks": _tasks(("ad_stream", "stream", _A))},
    ),
    "ads-anc": (
        "Ads Stream + ANC heads",
        {"tasks": _tasks(("ad_stream", "stream", _A), *((t, t, _A) for t in _ANCILLARY))},
    ),
    "unified": (
        "Promo + Ads 5-task MTL",
        {"tasks": unified_tasks(_P, _AP)},
    ),
    "paper": (
        "Promo + Ads 5-task MTL, the paper's configuration",
        {"tasks": unified_tasks(_P, _AP), **_without_defaults()},
    ),
    "logreg": (
        "Logistic regression, 5 tasks",
        # attention off: its bags would otherwise share the candidate's vocabulary in the encoding
        {"tasks": unified_tasks(_P, _AP),
         "model": {"encoder": "linear", "cross": {"layers": 0}, "attention": {"bags": []}},
         "optim": {"weight_decay": LOGREG_L2}},
    ),
}

#: Table 1 of the paper: relative change against the promotions baseline (Promotions AP, Ads AP).
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "promo-stream-only": (-0.079, -0.088),
    "ads-stream-only": (-0.652, 0.270),
    "ads-anc": (-0.648, 0.465),
    "unified": (0.045, 0.502),
}

BASELINE_PRESET = "promo-baseline"
TABLE1_ORDER = ("promo-baseline", "promo-stream-only", "ads-stream-only", "ads-anc", "unified")
#: The linear baseline: Table 1's last row and the ablation's last, never part of a claim's verdict.
LINEAR_BASELINE = "logreg"


def apply_preset(config: Config, name: str | None) -> Config:
    """``config`` with preset ``name``'s overrides merged in and validated again; None leaves it as is, an unknown name
    raises ``ConfigError`` listing the presets."""
    if name is None:
        return config
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return merge(config, PRESETS[name][1])


@dataclass(frozen=True)
class Variant:
    """A named setup: a preset plus configuration overrides."""

    name: str
    display: str
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def setup(self, base: Config) -> Config:
        """``base`` with the preset and the overrides applied (the seed left as configured)."""
        return merge(apply_preset(base, self.preset), self.overrides)

    def config(self, base: Config, seed: int) -> Config:
        """The variant's configuration for one seed: ``setup(base)`` with ``train.seed`` set, so seeds differ in nothing
        else."""
        return merge(self.setup(base), {"train": {"seed": seed}})


def parse_variant(spec: str) -> Variant:
    """A variant from the command line: ``PRESET`` or ``PRESET:key=value[,key=value...]`` with dotted
    keys into the configuration, e.g. ``unified:train.patience=3,optim.lr=0.002``. Values are read
    as JSON where they parse (numbers, true/false, lists), else as strings. The variant's name is
    the spec made safe for a directory name. An unknown preset, or an override without ``=``, is a
    ``ConfigError``; unknown keys fail when the variant is applied to a configuration."""
    preset, _, rest = spec.partition(":")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} in setup {spec!r}; choose one of: {', '.join(PRESETS)}")
    overrides: dict[str, Any] = {}
    for item in re.split(r",(?=[A-Za-z_][\w.]*=)", rest) if rest else []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"setup {spec!r}: override {item!r} is not key=value")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", spec.replace(":", "+"))
    return Variant(name, spec, preset, overrides)


#: Balanced batches revisit the smaller source several times per epoch; the natural mix shows
#: what that costs (``mode`` is set back to its default: a base configuration that reweights is still ablated).
NATURAL_MIX = Variant("natural-mix", "unified, natural batch mix (no source balancing)", "unified",
                      {"sampling": {"balanced": False, "mode": "resample"}})

#: The unified model as the paper trains it: the defaults without ``DEFAULT_COMPONENTS``.
PAPER_CONFIGURATION = Variant("paper", PRESETS["paper"][0], "paper")

#: Every row of the ablation study (section 4 of the paper): Table 1's presets, the unified
#: model's switches, feature-group removals, loss balancers, and the linear baseline last.
ABLATION_VARIANTS: tuple[Variant, ...] = (
    *(Variant(p, PRESETS[p][0], p) for p in TABLE1_ORDER),
    Variant("no-mask", "unified, no directional mask (ads also update promo_stream)", "unified",
            {"tasks": unified_tasks(_AP, _AP)}),
    Variant("mask-reversed", "unified, mask reversed (ads update promotions, not the reverse)", "unified",
            {"tasks": unified_tasks(_AP, _A)}),
    NATURAL_MIX,
    *(Variant(f"without-{name}", f"unified without {label}", "unified", overrides)
      for name, (label, overrides) in DEFAULT_COMPONENTS.items()),
    PAPER_CONFIGURATION,
    *(Variant(f"without-{g.value}", f"unified without the {g.value} features", "unified",
              {"features": {"drop_groups": [g.value]}}) for g in Group),
    *(Variant(f"loss-{m}", f"unified, {label}", "unified", {"loss": {"method": m}})
      for m, label in (("uncertainty", "uncertainty weighting"), ("gradnorm", "GradNorm"), ("pcgrad", "PCGrad"))),
    Variant(LINEAR_BASELINE, f"{PRESETS[LINEAR_BASELINE][0]} (linear baseline)", LINEAR_BASELINE),
)

#: Variants the main job trains beside Table 1 to explain its result: run name -> variant. The
#: run name (and the display name in REPORT.md) differs from the ablation row's; the configuration
#: is the same.
DIAGNOSTICS: dict[str, Variant] = {"unified-natural-mix": NATURAL_MIX, "unified-paper": PAPER_CONFIGURATION}
_DIAGNOSTIC_NAMES = {"unified-natural-mix": "Promo + Ads 5-task MTL, natural mix (no source balancing)",
                     "unified-paper": PRESETS["paper"][0]}


def display_name(setup: str) -> str:
    """The title REPORT.md gives a setup: the preset's display name, a diagnostic run's own name, else the name
    itself."""
    if setup in PRESETS:
        return PRESETS[setup][0]
    return _DIAGNOSTIC_NAMES.get(setup, setup)
