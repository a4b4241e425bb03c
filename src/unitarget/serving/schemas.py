"""Request and response bodies of the scoring service, one module (FastAPI's convention).

Field names are the data contract's column names, so a request becomes a table the saved encoder
reads as it read the training log. Every model is strict about what it accepts:

- unknown keys are rejected (``extra="forbid"``), so a misspelt feature is an error, not ignored;
- NaN and ±Infinity (which Python's json module accepts, and 1e309 parses to) are rejected;
- ids are strings (a number is not silently turned into one), counts are integers in range;
- strings must be valid Unicode (JSON allows lone surrogates such as "\\ud800"; pydantic refuses them).

Extra features (``FeaturesConfig.extra``: columns beyond the contract's) travel in the optional
``features`` mapping of the object their group belongs to (user; context; content and creative on
the candidate). The schema checks their values are ids, numbers or lists of either; whether a name
is one of the model's features and a value fits its kind (a vector: its width) depends on the
model, so the request encoder checks that (also a 422 naming the field).

How many candidates a request may carry is the server's setting (413 above it), not the schema's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

MAX_ID_CHARS = 512
MAX_BAG_ITEMS = 1_000
MAX_VECTOR_ITEMS = 4_096
MAX_EXTRA_FEATURES = 256
#: Counts above this cannot come from a real log and would overflow downstream arithmetic.
MAX_COUNT = 10**15


Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)]
Bag = Annotated[list[Text], Field(max_length=MAX_BAG_ITEMS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
#: An extra feature's value: a categorical id, a number, a bag of ids or a vector.
FeatureValue = Text | Number | Annotated[list[Text], Field(max_length=MAX_BAG_ITEMS)] | \
    Annotated[list[Number], Field(max_length=MAX_VECTOR_ITEMS)]
Features = Annotated[dict[Id, FeatureValue], Field(max_length=MAX_EXTRA_FEATURES)]
_FEATURES_DOC = "extra features of this object's groups (FeaturesConfig.extra), by name"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class User(_Strict):
    """The listener (the contract's user group); only ``user_id`` is required."""

    user_id: Id
    user_country: Text | None = None
    user_age_bucket: Text | None = None
    user_history_shows: Bag | None = None
    user_followed_shows: Bag | None = None
    features: Features | None = Field(None, description=_FEATURES_DOC)


class Context(_Strict):
    """Where and when the impression would be served (the context group)."""

    ts: datetime | None = Field(None, description="ISO-8601 time of the request; default now (UTC); "
                                                   "hour of day and weekday are derived from it")
    surface: Text | None = None
    device: Text | None = None
    features: Features | None = Field(None, description=_FEATURES_DOC)

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Naive times are UTC (as in the contract); aware ones are converted to UTC."""
        if value is None:
            return None
        try:
            return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("ts is out of the representable range") from None


class Candidate(_Strict):
    """A show to promote or an ad to serve: content and creative fields. Only ``show_id`` is required."""

    id: Text | None = Field(None, description="your key for this candidate, echoed in the response")
    show_id: Id
    episode_id: Text | None = None
    show_genre: Text | None = None
    show_topics: Bag | None = None
    show_publisher: Text | None = None
    show_streams_30d: Count | None = None
    show_age_days: Count | None = None
    format: Text | None = None
    campaign_id: Text | None = None
    creative_id: Text | None = None
    slot: Text | None = None
    layout: Text | None = None
    price: Price | None = Field(None, description="cost of this candidate, for value-per-cost ranking")
    features: Features | None = Field(None, description=_FEATURES_DOC)


class ScoreRequest(_Strict):
    """Body of ``/v1/score``: one user and context shared by every candidate, and at least one candidate."""

    user: User
    context: Context = Context()
    candidates: list[Candidate] = Field(min_length=1)


class Objective(_Strict):
    """What to rank by: one task's probability, or Σ weight_t · p_t; optionally divided by price."""

    task: StrictStr | None = None
    weights: dict[StrictStr, Finite] | None = Field(None, min_length=1)
    per_price: StrictBool = Field(False, description="divide by each candidate's price (value per cost)")

    @model_validator(mode="after")
    def _one_of(self) -> "Objective":
        if (self.task is None) == (self.weights is None):
            raise ValueError("give exactly one of 'task' or 'weights'")
        return self


class RankRequest(ScoreRequest):
    """Body of ``/v1/rank``: a score request plus the objective to rank by and how many to return."""

    objective: Objective
    top_k: int | None = Field(None, ge=1, strict=True, description="return the best k; default all")


class ReloadRequest(_Strict):
    """Body of ``/v1/reload``: the version to switch to, a directory name inside the models directory."""

    version: Id = Field(description="name of a model directory inside the server's models directory")


# ----------------------------------------------------------------------------------- responses
class ScoredCandidate(BaseModel):
    """One candidate's answer: its position and id in the request, a probability per task, and its fields that were
    unknown to the model."""

    index: int = Field(description="position of the candidate in the request")
    id: str | None = None
    probabilities: dict[str, float] = Field(description="task -> probability")
    oov_fields: list[str] = Field(description="candidate fields whose value is unknown to the model")


class ScoreResponse(BaseModel):
    """Answer of ``/v1/score``: the model version, its tasks, the user and context fields unknown to the model, and the
    candidates in request order."""

    model_version: str
    tasks: list[str]
    oov_fields: list[str] = Field(description="user and context fields whose value is unknown to the model")
    candidates: list[ScoredCandidate]


class RankedCandidate(ScoredCandidate):
    """A scored candidate with its objective value, the key it was ranked by."""

    score: float = Field(description="the objective's value")


class RankResponse(BaseModel):
    """Answer of ``/v1/rank``: like ``ScoreResponse`` but the candidates best first, at most ``top_k``."""

    model_version: str
    tasks: list[str]
    oov_fields: list[str]
    candidates: list[RankedCandidate] = Field(description="best first")


class ModelVersions(BaseModel):
    """The versions the answering worker serves now and before (the rollback target), the current version's manifest,
    and where that worker stands against the models directory's version pointer, which every worker follows."""

    current: str | None
    previous: str | None
    manifest: dict[str, Any] | None = None
    worker: int | None = Field(None, description="process id of the worker that answered")
    pointed: str | None = Field(None, description="the version the version pointer names: what every worker serves "
                                                  "once it has followed the last reload or rollback")
    in_sync: bool | None = Field(None, description="whether this worker serves the pointed version")
    follow_error: str | None = Field(None, description="why this worker could not load the pointed version (it keeps "
                                                       "serving ``current``)")
    others_follow_within_s: float | None = Field(None, description="reload and rollback: the other workers serve the "
                                                 "new version within about this many seconds (pointer poll + their "
                                                 "own load and checks)")


class ErrorBody(BaseModel):
    """An error answer: ``detail`` is a message, or FastAPI's list of {loc, msg, type} field errors."""

    detail: Any
