"""Category vocabularies of the synthetic world and string ids for its entities.

Every categorical input of :meth:`World.true_probabilities` is an integer index into one of the
tuples below; the effect tables in :class:`~unitarget.synth.params.LabelModel` are aligned with
them. The strings are what the impression log writes.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa

from unitarget.contract import ADS, PROMOTIONS

#: Source codes used by the index arrays: 0 = ads, 1 = promotions.
SOURCES: Final = (ADS, PROMOTIONS)
SOURCE_ADS: Final = 0
SOURCE_PROMOTIONS: Final = 1

COUNTRIES: Final = ("US", "GB", "DE", "SE", "BR", "MX", "IN", "FR")
COUNTRY_SHARES: Final = (0.30, 0.10, 0.10, 0.05, 0.15, 0.10, 0.10, 0.10)

AGE_BUCKETS: Final = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARES: Final = (0.25, 0.30, 0.20, 0.15, 0.10)

DEVICES: Final = ("ios", "android", "desktop", "web", "tv")
DEVICE_SHARES: Final = (0.40, 0.35, 0.12, 0.08, 0.05)

GENRES: Final = (
    "comedy", "true_crime", "news", "sports", "business", "technology", "health", "education",
    "society", "history", "music", "arts", "science", "religion", "kids", "fiction",
)  # fmt: skip

#: Ad creative formats (index 0..2). Promotions carry format "display" on the home shelf, null in search.
FORMATS: Final = ("audio", "video", "display")
AUDIO, VIDEO, DISPLAY = 0, 1, 2
FORMAT_SHARES: Final = (0.50, 0.20, 0.30)

SURFACES: Final = ("home_shelf", "search", "in_stream_audio", "in_stream_video", "display_banner")
HOME_SHELF, SEARCH = 0, 1
#: The ad surface of each format: audio -> in_stream_audio, video -> in_stream_video, display -> banner.
AD_SURFACE_OF_FORMAT: Final = np.array([2, 3, 4], dtype=np.int8)

SLOTS: Final = (
    "pos_1", "pos_2", "pos_3", "pos_4",  # promotion positions
    "pre_roll", "mid_roll", "post_roll",  # in-stream audio / video ads
    "banner_top", "banner_bottom",  # display ads
)  # fmt: skip
PROMO_SLOTS: Final = np.array([0, 1, 2, 3], dtype=np.int8)
PROMO_SLOT_SHARES: Final = (0.40, 0.30, 0.20, 0.10)
IN_STREAM_SLOTS: Final = np.array([4, 5, 6], dtype=np.int8)
IN_STREAM_SLOT_SHARES: Final = (0.40, 0.40, 0.20)
BANNER_SLOTS: Final = np.array([7, 8], dtype=np.int8)
BANNER_SLOT_SHARES: Final = (0.60, 0.40)

LAYOUTS: Final = ("card", "banner", "carousel", "list_row")
#: Home-shelf promotions use card / banner / carousel; search promotions use list_row.
SHELF_LAYOUTS: Final = np.array([0, 1, 2], dtype=np.int8)
SHELF_LAYOUT_SHARES: Final = (0.50, 0.20, 0.30)
LIST_ROW = 3

#: Relative traffic by hour of day (UTC; the world has no time zones): night trough, morning
#: commute bump, evening peak.
HOUR_TRAFFIC: Final = (
    0.35, 0.25, 0.20, 0.15, 0.15, 0.25, 0.50, 0.90, 1.10, 1.00, 0.90, 0.90,
    0.95, 0.95, 0.90, 0.90, 1.00, 1.15, 1.30, 1.40, 1.40, 1.30, 1.00, 0.65,
)  # fmt: skip
#: Relative traffic by weekday, Monday first.
WEEKDAY_TRAFFIC: Final = (1.00, 0.98, 0.98, 1.00, 1.03, 1.08, 1.06)


def id_strings(prefix: str, n: int, min_width: int) -> pa.StringArray:
    """``prefix`` + zero-padded index for 0..n-1, e.g. ``id_strings("u", 3, 6)[2] == "u000002"``."""
    width = max(min_width, len(str(max(n - 1, 0))))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(n)], type=pa.string())


def user_ids(n: int) -> pa.StringArray:
    """User ids ``u000000``, ``u000001``, ...: at least 6 digits, more when n needs them."""
    return id_strings("u", n, 6)


def show_ids(n: int) -> pa.StringArray:
    """Show ids ``s00000``, ...: at least 5 digits."""
    return id_strings("s", n, 5)


def publisher_ids(n: int) -> pa.StringArray:
    """Publisher ids ``pub0000``, ...: at least 4 digits."""
    return id_strings("pub", n, 4)


def topic_ids(n: int) -> pa.StringArray:
    """Topic ids ``topic_000``, ...: at least 3 digits."""
    return id_strings("topic_", n, 3)


def ad_campaign_ids(n: int) -> pa.StringArray:
    """Ad campaign ids ``c00000``, ...: at least 5 digits."""
    return id_strings("c", n, 5)


def promo_campaign_ids(n: int) -> pa.StringArray:
    """Promotion campaign ids ``p00000``, ...: at least 5 digits."""
    return id_strings("p", n, 5)


def creative_ids(n: int) -> pa.StringArray:
    """Creative ids ``cr000000``, ...: at least 6 digits."""
    return id_strings("cr", n, 6)


def shares(values: tuple[float, ...]) -> np.ndarray:
    """Normalised probability vector of a tuple of relative weights."""
    p = np.asarray(values, dtype=np.float64)
    return p / p.sum()
