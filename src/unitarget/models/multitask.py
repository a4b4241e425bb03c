"""The unified multi-task model: p_t(x) = σ(g_ψt(h_φ(x))) — this module returns the logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unitarget.config import ModelConfig
from unitarget.data.batch import Batch
from unitarget.data.features import FeatureLayout
from unitarget.models.embeddings import FeatureEmbedder
from unitarget.models.encoders import SharedBottom
from unitarget.models.towers import Tower


class MultiTaskModel(nn.Module):
    """embedder -> encoder -> one tower per task; ``forward`` gives logits (B, T) in task order."""

    def __init__(
        self, embedder: FeatureEmbedder, encoder: nn.Module, towers: dict[str, Tower]
    ) -> None:
        super().__init__()
        self.embedder = embedder
        self.encoder = encoder
        self.towers = nn.ModuleDict(towers)
        self.frozen = False

    @property
    def task_names(self) -> list[str]:
        return list(self.towers.keys())

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.embedder(batch.ids, batch.dense)  # (B, F)
        z = self.encoder(x)  # (B, H) shared, or T × (B, H)
        per_task = [z] * len(self.towers) if isinstance(z, torch.Tensor) else z
        return torch.stack([tower(z) for tower, z in zip(self.towers.values(), per_task)], dim=1)

    def freeze(self, except_towers: Sequence[str]) -> None:
        """Stop every parameter but those of ``except_towers`` from learning. Frozen batch-norm
        layers also keep their running statistics (they stay in eval mode when training)."""
        self.frozen = True
        for name, parameter in self.named_parameters():
            if not any(name.startswith(f"towers.{t}.") for t in except_towers):
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> "MultiTaskModel":
        super().train(mode)
        if self.frozen:
            self.embedder.eval()
            self.encoder.eval()
        return self

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches: what gradient-balancing methods operate on."""
        return [p for p in (*self.embedder.parameters(), *self.encoder.parameters()) if p.requires_grad]


def build_model(config: ModelConfig, layout: FeatureLayout, tasks: Sequence[str]) -> MultiTaskModel:
    embedder = FeatureEmbedder(layout, config.embedding_dim)
    encoder = SharedBottom(
        embedder.output_dim, config.hidden, batch_norm=config.batch_norm, dropout=config.dropout
    )
    towers = {name: Tower(encoder.output_dim, config.tower_hidden, config.dropout) for name in tasks}
    return MultiTaskModel(embedder, encoder, towers)
