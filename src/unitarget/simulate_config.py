"""The ``simulate`` section of the configuration: the online budget-split A/B simulation's market, budgets and
statistics (``config.Config`` holds it as ``simulate``; ``config`` re-exports it)."""

from __future__ import annotations

from pydantic import Field, model_validator

from unitarget import contract
from unitarget.model_config import Strict


class SimulateConfig(Strict):
    """The online budget-split A/B simulation (``unitarget simulate``, simulation/).

    Markets are independent replications (own users and campaigns) that give the confidence
    intervals; every arm replays the same opportunity stream with its share of each budget.
    """

    markets: int = Field(20, ge=1, description="independent user groups with their own campaigns")
    days: int = Field(7, ge=1, description="newest days of the world simulated (reproduce: the test days)")
    opportunities_per_day: int = Field(60_000, ge=1, description="ad opportunities per day, all markets")
    candidates: int = Field(8, ge=1, description="creatives retrieved per opportunity, scored by each arm")
    budget_to_supply: float = Field(
        1.0, gt=0, description="impressions the full budgets would buy / opportunities in the stream"
    )
    budget_share: float = Field(0.5, gt=0, le=1, description="share of every campaign's budget each arm gets")
    cpm: float = Field(10.0, gt=0, description="median price per 1,000 impressions")
    cpm_sd: float = Field(0.3, ge=0, description="log-normal spread of campaign prices")
    objective: dict[str, float] = Field(
        default_factory=lambda: {contract.REQUIRED_LABEL: 1.0},
        description="label -> weight of its predicted probability in a candidate's value",
    )
    value_per_cost: bool = Field(True, description="rank candidates by value / price instead of value")
    bootstrap: int = Field(2_000, ge=1, description="market bootstrap resamples for the intervals")
    permutations: int = Field(2_000, ge=1, description="sign flips of arms within markets for the p-values")
    score_rows: int = Field(131_072, ge=1, description="opportunity x candidate rows per model call")
    seed: int = 0

    @model_validator(mode="after")
    def _objective_is_valid(self) -> "SimulateConfig":
        unknown = set(self.objective) - set(contract.LABELS)
        if unknown:
            raise ValueError(f"simulate.objective names unknown labels {sorted(unknown)}; use {contract.LABELS}")
        if any(w < 0 for w in self.objective.values()) or not any(w > 0 for w in self.objective.values()):
            raise ValueError("simulate.objective needs non-negative weights, at least one positive")
        return self
