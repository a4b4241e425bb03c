"""The unified multi-task model: p_t(x) = σ(g_ψt(h_φ(c(x)))) — this module returns the logits.

embedder (with optional DIN target attention over the history) -> optional cross layers c (DCN-v2) -> encoder h_φ
(shared-bottom, MMoE, PLE, CAMoE) -> one tower g_ψt per task, plus, with ``model.wide``, each task's own linear term
(Wide & Deep). ``build_model`` picks the encoder from ``ModelConfig.encoder`` through one literal dict; a variant
swaps one argument. ``encoder = "linear"`` composes the logistic-regression baseline from the same three roles
(``models.linear``: weighted sums, one column per task, a bias).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from unitarget.model_config import LinearConfig, ModelConfig
from unitarget.data.batch import Features
from unitarget.data.features import FeatureLayout
from unitarget.models.attention import target_attention
from unitarget.models.embeddings import FeatureEmbedder
from unitarget.models.cross import CrossNetwork
from unitarget.models.encoders import SharedBottom
from unitarget.models.experts import camoe, mmoe, ple
from unitarget.models.linear import LinearTerms, TaskColumns
from unitarget.models.regularisers import EmbeddingRegulariser
from unitarget.models.towers import BiasTower, Tower, stackable, stacked_logits
from unitarget.models.wide import WideTerms


class MultiTaskModel(nn.Module):
    """embedder -> cross -> encoder -> one tower per task; ``forward`` gives logits (B, T) in task order."""

    def __init__(
        self, embedder: FeatureEmbedder | LinearTerms, encoder: nn.Module, towers: Mapping[str, Tower | BiasTower],
        cross: nn.Module | None = None, wide: WideTerms | None = None,
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.cross = cross if cross is not None else nn.Identity()  # no parameters: same state_dict
        self.encoder = encoder
        self.towers = nn.ModuleDict(towers)
        self.wide = wide  # Wide & Deep (models.wide): each task's own linear term; None = none, the same state_dict
        self.frozen = False

    @property
    def task_names(self) -> list[str]:
        """Task names in tower order: the column order of the logits."""
        return list(self.towers.keys())

    def forward(self, features: Features) -> torch.Tensor:
        """Logits (B, T) of every task, columns in ``task_names`` order (sigmoid gives p_t(x))."""
        return self._logits(features, None)

    def forward_tasks(self, features: Features, tasks: Sequence[int]) -> torch.Tensor:
        """Logits (B, len(tasks)) of the given tasks only: a mixture-of-experts encoder then skips
        the experts none of them reads (inference-time expert masking, for serving one format)."""
        return self._logits(features, list(tasks))

    def _logits(self, features: Features, tasks: list[int] | None) -> torch.Tensor:
        wanted = list(range(len(self.towers))) if tasks is None else tasks
        x = self.cross(self.embedder(features.ids, features.dense))  # (B, F)
        z = self.encoder(x, tasks)  # (B, H) shared, or len(wanted) × (B, H)
        towers = [list(self.towers.values())[i] for i in wanted]
        if isinstance(z, torch.Tensor) and stackable(towers):
            logits = stacked_logits(towers, z)
        else:
            per_task = [z] * len(wanted) if isinstance(z, torch.Tensor) else z
            logits = torch.stack([tower(z) for tower, z in zip(towers, per_task)], dim=1)
        if self.wide is not None:
            logits = logits + self.wide.columns(features.ids, features.dense, wanted)
        return logits

    def load_base(self, base: "MultiTaskModel") -> None:
        """Take every weight of ``base``, a model with a subset of these tasks (``finetune``): a task it lacks keeps its
        fresh tower and, in a wide model, its zero column of the wide table."""
        state = base.state_dict()
        if self.wide is not None and base.wide is not None:
            self.wide.load_base(state.pop("wide.table.weight"), state.pop("wide.dense"), base.task_names)
        self.load_state_dict(state, strict=False)

    def freeze(self, except_towers: Sequence[str]) -> None:
        """Stop every parameter but those of ``except_towers`` (and their wide terms) from learning. Frozen batch-norm
        layers also keep their running statistics (they stay in eval mode when training)."""
        self.frozen = True
        for name, parameter in self.named_parameters():
            if not name.startswith("wide.") and not any(name.startswith(f"towers.{t}.") for t in except_towers):
                parameter.requires_grad_(False)
        if self.wide is not None:
            self.wide.freeze_columns(except_towers)

    def train(self, mode: bool = True) -> "MultiTaskModel":
        """Set training mode, except that after ``freeze`` the embedder, cross layers and encoder stay in eval mode, so
        frozen batch norms keep their running statistics."""
        super().train(mode)
        if self.frozen:
            self.embedder.eval()
            self.cross.eval()
            self.encoder.eval()
        return self

    def last_shared_weight(self) -> nn.Parameter | None:
        """The last layer every task's loss reaches and that still learns (GradNorm's W): the
        encoder's, else the cross layers' last weight; None when nothing shared learns."""
        candidates = [self.encoder.last_shared_weight()]
        candidates += [p for p in self.cross.parameters() if p.ndim == 2][-1:]
        return next((p for p in candidates if p is not None and p.requires_grad), None)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches: what gradient-balancing methods operate on."""
        shared = (*self.embedder.parameters(), *self.cross.parameters(), *self.encoder.parameters())
        return [p for p in shared if p.requires_grad]


def _encoder(
    config: ModelConfig, input_dim: int, tasks: Sequence[str], groups: Mapping[str, str]
) -> nn.Module:
    """The encoder named by ``config.encoder``."""
    e, common = config.experts, {"batch_norm": config.batch_norm, "dropout": config.dropout}
    encoders: dict[str, Callable[[], nn.Module]] = {  # (linear has no encoder of its own: build_model)
        "shared_bottom": lambda: SharedBottom(input_dim, config.hidden, **common),
        "mmoe": lambda: mmoe(input_dim, tasks, experts=e.shared, hidden=e.hidden, **common),
        "ple": lambda: ple(input_dim, tasks, shared=e.shared, specific=e.specific, levels=e.levels,
                           hidden=e.hidden, **common),
        "camoe": lambda: camoe(input_dim, tasks, groups, shared=e.shared, specific=e.specific,
                               levels=e.levels, hidden=e.hidden, **common),
    }
    return encoders[config.encoder]()


def build_model(
    config: ModelConfig, layout: FeatureLayout, tasks: Sequence[str], groups: Mapping[str, str] | None = None
) -> MultiTaskModel:
    """Compose the model ``config`` describes for ``tasks``; ``groups`` (task -> modality group,
    ``Config.task_groups()``) is read by the camoe encoder only."""
    if config.encoder == "linear":
        return MultiTaskModel(LinearTerms(layout, len(tasks), config.linear), TaskColumns(len(tasks)),
                              {name: BiasTower() for name in tasks})
    attention = target_attention(config.attention, layout, config.embedding_dim)
    regulariser = EmbeddingRegulariser(layout, {g.value: v for g, v in config.embedding_decay.items()},
                                       {g.value: p for g, p in config.embedding_dropout.items()})
    embedder = FeatureEmbedder(layout, config.embedding_dim, attention, regulariser)
    cross = None
    if config.cross.layers > 0:
        cross = CrossNetwork(embedder.output_dim, config.cross.layers, config.cross.rank)
    encoder = _encoder(config, embedder.output_dim, tasks, groups or {})
    towers = {name: Tower(encoder.output_dim, config.tower_hidden, config.dropout) for name in tasks}
    wide = None
    if config.wide:
        wide = WideTerms(layout, tasks, config.linear if config.wide_crosses else LinearConfig(crosses=()))
    return MultiTaskModel(embedder, encoder, towers, cross, wide)
