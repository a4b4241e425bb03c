"""The task setups of the paper's Table 1, as configuration overrides.

A preset only changes which tasks exist and which sources each learns from; the data a model sees
follows from that (``Config.training_sources``). Everything else — features, architecture,
optimiser — stays as configured, so the rows of Table 1 differ in the task setup alone.
"""

from __future__ import annotations

from typing import Any

from unitarget import contract
from unitarget.config import Config, merge
from unitarget.errors import ConfigError

_P = [contract.PROMOTIONS]
_A = [contract.ADS]
_AP = [contract.ADS, contract.PROMOTIONS]


def _tasks(*specs: tuple[str, str, list[str]]) -> list[dict[str, Any]]:
    return [{"name": name, "label": label, "sources": sources} for name, label, sources in specs]


_ANCILLARY = ("click", "like", "follow")

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
        {
            "tasks": _tasks(
                ("promo_stream", "stream", _P),
                ("ad_stream", "stream", _AP),
                *((t, t, _AP) for t in _ANCILLARY),
            )
        },
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


def apply_preset(config: Config, name: str | None) -> Config:
    if name is None:
        return config
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return merge(config, PRESETS[name][1])


_DIAGNOSTIC_NAMES = {"unified-natural-mix": "Promo + Ads 5-task MTL, natural mix (no source balancing)"}


def display_name(setup: str) -> str:
    if setup in PRESETS:
        return PRESETS[setup][0]
    return _DIAGNOSTIC_NAMES.get(setup, setup)
