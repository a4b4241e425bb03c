"""The impression-log contract (docs/data-contract.md) as code: the single source of column names.

Every other module asks this one which columns exist, what Arrow type they must have, which feature
group they belong to and how popularity tiers are cut. Models never see a column name; only the
encoder and the validator read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

import numpy as np

IMPRESSION_ID: Final = "impression_id"
TS: Final = "ts"
SOURCE: Final = "source"
USER_ID: Final = "user_id"
SHOW_ID: Final = "show_id"
SHOW_STREAMS_30D: Final = "show_streams_30d"
FORMAT: Final = "format"
CAMPAIGN_ID: Final = "campaign_id"
SLOT: Final = "slot"

#: Optional column of logged-bandit logs: the logging policy's probability of the shown item at
#: that impression (float64 in (0, 1], null = unknown). Only ``unitarget ope`` reads it.
PROPENSITY: Final = "propensity"

#: Ad formats of the ``format`` column; a task may learn from some of them only (``TaskSpec.formats``).
AD_FORMATS: Final = ("audio", "video", "display")

ADS: Final = "ads"
PROMOTIONS: Final = "promotions"
DEFAULT_SOURCES: Final = (ADS, PROMOTIONS)

#: Binary outcome columns. ``stream`` is required, the others optional; null means "not observed".
LABELS: Final = ("stream", "click", "like", "follow")
REQUIRED_LABEL: Final = "stream"

#: Columns the synthetic world writes beside each label: the true probability it was drawn from.
TRUE_PROBABILITY_PREFIX: Final = "true_"

#: Predictions are written as ``p_<task>``.
PREDICTION_PREFIX: Final = "p_"


class Kind(str, Enum):
    """How a feature column is encoded."""

    CATEGORICAL = "categorical"  # one string id per row -> one embedding
    BAG = "bag"  # list<string> -> mean of embeddings
    NUMERIC = "numeric"  # integer/float count -> log1p, standardised
    VECTOR = "vector"  # fixed-length list<float> -> passed through as dense inputs


class Group(str, Enum):
    """The paper's four feature groups (section 3.1)."""

    USER = "user"
    CONTENT = "content"
    CONTEXT = "context"
    CREATIVE = "creative"


@dataclass(frozen=True)
class FeatureColumn:
    """A feature column of the contract: its name, the feature group ablations drop it with, and its kind (how it is
    encoded)."""

    name: str
    group: Group
    kind: Kind


#: The contract's standard feature columns, in contract order. ``user_id`` and ``show_id`` are
#: required columns but also the strongest features, so they are listed here too.
STANDARD_FEATURES: Final[tuple[FeatureColumn, ...]] = (
    FeatureColumn(USER_ID, Group.USER, Kind.CATEGORICAL),
    FeatureColumn("user_country", Group.USER, Kind.CATEGORICAL),
    FeatureColumn("user_age_bucket", Group.USER, Kind.CATEGORICAL),
    FeatureColumn("user_history_shows", Group.USER, Kind.BAG),
    FeatureColumn("user_followed_shows", Group.USER, Kind.BAG),
    FeatureColumn(SHOW_ID, Group.CONTENT, Kind.CATEGORICAL),
    FeatureColumn("episode_id", Group.CONTENT, Kind.CATEGORICAL),
    FeatureColumn("show_genre", Group.CONTENT, Kind.CATEGORICAL),
    FeatureColumn("show_topics", Group.CONTENT, Kind.BAG),
    FeatureColumn("show_publisher", Group.CONTENT, Kind.CATEGORICAL),
    FeatureColumn(SHOW_STREAMS_30D, Group.CONTENT, Kind.NUMERIC),
    FeatureColumn("show_age_days", Group.CONTENT, Kind.NUMERIC),
    FeatureColumn("surface", Group.CONTEXT, Kind.CATEGORICAL),
    FeatureColumn("device", Group.CONTEXT, Kind.CATEGORICAL),
    FeatureColumn(FORMAT, Group.CREATIVE, Kind.CATEGORICAL),
    FeatureColumn(CAMPAIGN_ID, Group.CREATIVE, Kind.CATEGORICAL),
    FeatureColumn("creative_id", Group.CREATIVE, Kind.CATEGORICAL),
    FeatureColumn(SLOT, Group.CREATIVE, Kind.CATEGORICAL),
    FeatureColumn("layout", Group.CREATIVE, Kind.CATEGORICAL),
)

#: Features derived from ``ts`` rather than stored (context group).
HOUR: Final = "hour"
WEEKDAY: Final = "weekday"
DERIVED_TIME_FEATURES: Final = (
    FeatureColumn(HOUR, Group.CONTEXT, Kind.CATEGORICAL),
    FeatureColumn(WEEKDAY, Group.CONTEXT, Kind.CATEGORICAL),
)

REQUIRED_COLUMNS: Final = (IMPRESSION_ID, TS, SOURCE, USER_ID, SHOW_ID, REQUIRED_LABEL)

#: Lower bounds of tiers 0..7 on 30-day streams (the paper's stream tiers).
TIER_LOWER_BOUNDS: Final = (1_000_000, 100_000, 5_000, 1_000, 200, 20, 1, 0)
N_TIERS: Final = len(TIER_LOWER_BOUNDS)
#: Tiers 3..7 (< 5,000 streams) form the "less-streamed creators" segment.
LESS_STREAMED_MIN_TIER: Final = 3


def tier_of(streams_30d: np.ndarray) -> np.ndarray:
    """Popularity tier (0 = most streamed, 7 = no streams) of each 30-day stream count.

    >>> tier_of(np.array([2_000_000, 5_000, 4_999, 0])).tolist()
    [0, 2, 3, 7]
    """
    streams = np.asarray(streams_30d, dtype=np.int64)
    bounds = np.array(TIER_LOWER_BOUNDS[::-1], dtype=np.int64)  # ascending: 0, 1, 20, ...
    # searchsorted over ascending bounds counts how many bounds are <= value.
    passed = np.searchsorted(bounds, streams, side="right")
    return (N_TIERS - passed).astype(np.int8)


def true_probability_column(label: str) -> str:
    """The column holding the world's true probability of ``label`` (``true_<label>``), which oracle AP is computed
    from."""
    return f"{TRUE_PROBABILITY_PREFIX}{label}"


def prediction_column(task: str) -> str:
    """The column a scored table writes task ``task``'s predicted probability to (``PREDICTION_PREFIX`` + task)."""
    return f"{PREDICTION_PREFIX}{task}"
