"""The arms of the CAMoE study (KDD 2025): which models each row trains, as configuration overrides.

Its own module, apart from the runner (``studies.camoe``), so that what reads the study's results
(``studies.camoe_results``, ``reports.camoe``) can name the arms without importing the training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unitarget import contract
from unitarget.config import Config, merge
from unitarget.contract import AD_FORMATS

LABELS = ("click", "stream")
#: The paper's CAMoE: modality groups, DCN-v2 crosses on the embedded input (low rank), format mask.
CAMOE_MODEL: dict[str, Any] = {"encoder": "camoe", "cross": {"layers": 2, "rank": 64}}


def format_tasks(labels: Sequence[str] = LABELS, *, masked: bool = True,
                 formats: Sequence[str] = AD_FORMATS) -> list[dict[str, Any]]:
    """``<label>_<format>`` tasks on ad impressions; ``masked``: each learns from its format only."""
    return [{"name": f"{label}_{fmt}", "label": label, "sources": [contract.ADS],
             "formats": [fmt] if masked else None} for label in labels for fmt in formats]


@dataclass(frozen=True)
class Arm:
    """One row of the study: configuration overrides per model it trains (most arms: one)."""

    name: str
    display: str
    models: tuple[dict[str, Any], ...]
    ablation: bool = False

    def configs(self, base: Config, seed: int) -> list[Config]:
        """One configuration per model of the arm: ``base`` with that model's overrides, then ``train.seed`` set to
        ``seed``."""
        return [merge(merge(base, overrides), {"train": {"seed": seed}}) for overrides in self.models]


def camoe_arms() -> list[Arm]:
    """Baselines (single-task, pooled and per-format multi-task, MMoE, PLE), CAMoE, its ablations."""
    pooled = [{"name": label, "label": label, "sources": [contract.ADS]} for label in LABELS]
    per_format = {"tasks": format_tasks()}
    sb = {"encoder": "shared_bottom"}

    def camoe(**model: Any) -> tuple[dict[str, Any], ...]:
        return ({**per_format, "model": _merge_dicts(CAMOE_MODEL, model)},)

    return [
        Arm("single-task", "single-task per format (3 click models)",
            tuple({"tasks": format_tasks(("click",), formats=[f]), "model": sb} for f in AD_FORMATS)),
        Arm("mtl-pooled", "multi-task, click + stream heads shared by all formats",
            ({"tasks": pooled, "model": sb},)),
        Arm("mtl-per-format", "multi-task, per-format heads, shared bottom", ({**per_format, "model": sb},)),
        Arm("mmoe", "MMoE, per-format heads", ({**per_format, "model": {"encoder": "mmoe"}},)),
        Arm("ple", "PLE (2 levels), per-format heads",
            ({**per_format, "model": {"encoder": "ple", "experts": {"levels": 2}}},)),
        Arm("camoe", "CAMoE: modality groups + DCN-v2 + format mask", camoe()),
        Arm("camoe-no-cross", "CAMoE without cross layers", camoe(cross={"layers": 0}), True),
        Arm("camoe-no-experts", "CAMoE without experts: shared bottom + DCN-v2 + format mask",
            ({**per_format, "model": {**sb, "cross": CAMOE_MODEL["cross"]}},), True),
        Arm("camoe-no-mask", "CAMoE without the format mask",  # same groups, named since no task has formats
            ({"tasks": format_tasks(masked=False), "model": _merge_dicts(CAMOE_MODEL, {"experts": {"groups": {
                "audio": [f"{label}_audio" for label in LABELS],
                "visual": [f"{label}_{f}" for label in LABELS for f in ("video", "display")]}}})},), True),
        Arm("camoe-experts-2-1", "CAMoE, 2 shared + 1 per group",
            camoe(experts={"shared": 2, "specific": 1}), True),
        Arm("camoe-experts-8-2", "CAMoE, 8 shared + 2 per group",
            camoe(experts={"shared": 8, "specific": 2}), True),
        Arm("camoe-groups-placement", "CAMoE, groups in-stream (audio + video) and display",
            camoe(experts={"modality": {"audio": "in_stream", "video": "in_stream", "display": "display"}}),
            True),
    ]


def _merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, nested dicts key by key."""
    out = dict(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge_dicts(out[key], value) if nested else value
    return out
