"""The ``model`` section of the configuration: the network's shape, its encoder and its optional
cross layers, target attention, experts and linear baseline (``config.Config`` holds it as ``model``)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unitarget import contract
from unitarget.contract import Group

#: The contract's ad formats as a type, so a misspelt format fails validation naming the field.
AdFormat = Literal["audio", "video", "display"]
assert get_args(AdFormat) == contract.AD_FORMATS


class Strict(BaseModel):
    """A configuration section: unknown keys rejected, values frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CrossConfig(Strict):
    """DCN-v2 cross layers on the embedded input, before the encoder (Wang et al. 2021)."""

    layers: int = Field(0, ge=0, description="number of cross layers; 0 = none")
    rank: int | None = Field(None, ge=1, description="low-rank W = U Vᵀ of this rank; None = full-rank W")


class AttentionConfig(Strict):
    """DIN target attention over list columns of the candidate's ids (Zhou et al. 2018, models/attention.py).

    The listed bags share the candidate's vocabulary (``Config.shared_vocabularies``), so a history token and the
    candidate read the same embedding row. On by default over the listening history and the follows (a bag the log
    lacks is skipped); empty ``bags`` = off: the model is exactly the one without this section.
    """

    bags: tuple[str, ...] = Field(("user_history_shows", "user_followed_shows"),
                                  description="list columns of candidate ids to attend over; empty = off (the paper's)")
    candidate: str = Field("show_id", description="the categorical feature each bag's tokens are compared with")
    hidden: tuple[int, ...] = Field((32,), description="the activation unit's MLP before its scalar weight")
    dot: bool = Field(True, description="also feed <attention-pooled history, candidate> per bag to the encoder")
    history_loss: float = Field(3.0, ge=0.0, description=(
        "weight λ of the co-listening objective (models/colistening.py): in training, predict a held-out token of "
        "each attended bag from the rest of it against the batch's other held-out tokens; 0 = off (the paper's)"))

    @model_validator(mode="after")
    def _bags_are_distinct(self) -> "AttentionConfig":
        if len(set(self.bags)) != len(self.bags):
            raise ValueError(f"model.attention.bags lists a column twice: {list(self.bags)}")
        if self.candidate in self.bags:
            raise ValueError(f"model.attention.candidate {self.candidate!r} is also one of its bags")
        return self


class ExpertsConfig(Strict):
    """Mixture-of-experts encoders (mmoe, ple, camoe); shared_bottom ignores this section."""

    hidden: tuple[int, ...] = Field((128, 64), min_length=1, description="each expert's MLP")
    shared: int = Field(4, ge=0, description="experts every task's gate may read")
    specific: int = Field(1, ge=0, description="experts owned by each task (ple) or modality group (camoe)")
    levels: int = Field(1, ge=1, description="extraction levels of ple and camoe; 1 = CGC, 2+ = progressive")
    modality: dict[AdFormat, str] = Field(
        default_factory=lambda: {"audio": "audio", "video": "visual", "display": "visual"},
        description="camoe: ad format -> modality group of the tasks restricted to that format",
    )
    groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="camoe: modality group -> task names; empty = derive from the tasks' formats",
    )


class LinearConfig(Strict):
    """The linear terms (models/linear.py) of the baseline (``encoder = "linear"``) and of a deep model's wide part
    (``wide = true``): its hashed pairwise crosses."""

    cross_buckets: int = Field(2**18, ge=1, description="hash buckets shared by every pairwise cross")
    crosses: tuple[tuple[str, str], ...] | None = Field(
        None, description="pairs of categorical features to cross; None = every pair of them in the log"
    )


class ModelConfig(Strict):
    """The network: the encoder (shared-bottom, MMoE, PLE, CAMoE, or ``linear``: the logistic-regression baseline that
    ignores the other sizes, the dropouts, the wide terms and the attention), embedding width, shared MLP, task towers,
    dropout and batch norm, plus the experts, cross-layer, target-attention and linear sections."""

    encoder: Literal["shared_bottom", "mmoe", "ple", "camoe", "linear"] = "shared_bottom"
    embedding_dim: int = Field(16, ge=1)
    hidden: tuple[int, ...] = Field((256, 128), min_length=1, description="shared encoder MLP")
    tower_hidden: tuple[int, ...] = Field((64,), description="per-task tower MLP before the logit")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="in the shared MLP and the towers (the paper's: 0)")
    batch_norm: bool = True
    wide: bool = Field(True, description=(
        "Wide & Deep (Cheng et al. 2016): add to each task's logit its own linear term over the one-hot ids and bag "
        "means (models/wide.py), trained jointly with the deep model"))
    wide_crosses: bool = Field(False, description="the wide terms also read the hashed crosses of model.linear "
                                                  "(one more random read per cross and row: slower scoring)")
    embedding_decay: dict[Group, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=dict, description="feature group -> λ: training adds λ·||e||² of every embedding row a batch "
                                          "reads for the group's features (a bag's tokens: their mean), averaged "
                                          "over the batch; rows no batch reads get no decay (models/regularisers.py)")
    embedding_dropout: dict[Group, Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        default_factory=lambda: {Group.USER: 0.3, Group.CONTENT: 0.3, Group.CREATIVE: 0.3},
        description="feature group -> p: in training, each of the group's features reads as "
                                          "absent (its out-of-vocabulary row; an empty bag) with probability p, per "
                                          "row and feature; never at inference")
    experts: ExpertsConfig = ExpertsConfig()
    cross: CrossConfig = CrossConfig()
    attention: AttentionConfig = AttentionConfig()
    linear: LinearConfig = LinearConfig()

    @model_validator(mode="after")
    def _embedding_regularisers_are_valid(self) -> "ModelConfig":
        if self.encoder == "linear" and any(self.embedding_decay.values()):
            raise ValueError("encoder linear has no embeddings: model.embedding_decay applies to the deep encoders "
                             "only")
        return self

    @model_validator(mode="after")
    def _experts_exist(self) -> "ModelConfig":
        e = self.experts
        if self.encoder == "linear" and self.cross.layers > 0:
            raise ValueError("encoder linear crosses features itself (model.linear); set model.cross.layers = 0")
        if any(f == g for f, g in self.linear.crosses or ()):
            raise ValueError("model.linear.crosses pairs a feature with itself")
        if self.encoder == "mmoe" and e.shared < 1:
            raise ValueError("encoder mmoe needs experts.shared >= 1")
        if self.encoder in ("ple", "camoe") and e.shared + e.specific < 1:
            raise ValueError(f"encoder {self.encoder} needs experts.shared + experts.specific >= 1")
        return self
