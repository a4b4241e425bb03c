"""Target attention over the user's history: DIN (Zhou et al. 2018, "Deep Interest Network for
Click-Through Rate Prediction").

An MLP over concatenated embeddings learns dot-product affinities poorly (Rendle et al. 2020), yet
a user's taste for a candidate show is mostly "is it like the shows they stream and follow". DIN
scores every history token h_i against the candidate c with a small *activation unit* and pools
the history with those weights:

    w_i = MLP([h_i, c, h_i − c, h_i ⊙ c]) ∈ ℝ      (0 for padding tokens)
    u   = Σ_i w_i · h_i                            (B, dim) per bag
    out = [u, ⟨u, c⟩]                              ⟨u, c⟩ only with ``model.attention.dot``

``out`` of every attended bag is appended to the embedder's output, beside (not instead of) the
bag's mean, so any encoder reads it; the linear baseline has no embeddings and refuses it.

Choices:

- **One vocabulary for history and candidate.** The fused table gives each feature its own block,
  so by default show X in ``user_history_shows`` and show X as ``show_id`` are two unrelated rows,
  and the attention would first have to learn, show by show, that they mean the same thing (only
  for shows seen in both roles, with labels to teach it). Instead the attended bags *share* the
  candidate's vocabulary and block (``Config.shared_vocabularies`` -> ``FeatureEncoder``'s
  ``shared``): h_i = c exactly when the candidate is in the history, for any show, from the first
  step. A learned projection between two blocks would have been the alternative; sharing is both
  simpler and exact. The bags' mean pooling then reads the same rows too (one embedding per show).
- **No normalisation** (as DIN: no softmax, no division by the history's length). The sum keeps
  the intensity of an interest (three matching shows weigh more than one) and a single match is
  not diluted by a long history; the length-normalised view is already there, in the bag's mean
  beside it, and ``features.bag_max_len`` bounds the sum's number of terms. It also makes padding
  exactly inert: its weight is masked to 0 and its row is zero.
- **One code path.** Plain gathers and small matrix products, the same ops for training, inference
  and the ONNX export; under ``optim.embedding_updates = "lazy"`` the gather's gradient is row-sparse
  like the embedder's.

Cost per row and bag of L tokens: L·(4·dim·h₁ + Σ hₖ·hₖ₊₁ + h_last) multiply-adds for the activation
unit plus 2·L·dim for the pooling: with dim 16, hidden (32,) and L = 20, about 42k per bag, against
≈120k for the default shared bottom; the encoder's first layer gains n_bags·(dim + 1) inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unitarget.data.encoders import PADDING_ROW
from unitarget.data.features import FeatureLayout
from unitarget.errors import UnitargetError
from unitarget.model_config import AttentionConfig
from unitarget.models import kernels
from unitarget.models.colistening import colistening_loss, inject
from unitarget.models.layers import mlp


class ActivationUnit(nn.Module):
    """DIN's activation unit: (tokens (B, L, dim), candidate (B, dim)) -> (B, L) weights, one scalar per token from
    MLP([h, c, h − c, h ⊙ c]); the difference and product give the MLP the affinity an MLP over [h, c] learns poorly."""

    def __init__(self, dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.mlp = mlp(4 * dim, hidden, batch_norm=False, dropout=0.0)  # per token: no batch statistics
        self.out = kernels.Linear(hidden[-1] if hidden else 4 * dim, 1)

    def forward(self, tokens: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """(B, L, dim), (B, dim) -> (B, L): the unnormalised weight of every token (padding is masked by the caller).

        The first layer is linear in [h, c, h − c, h ⊙ c], so with W = [W_h, W_c, W_d, W_p] it is
        (W_h + W_d + W_p·diag(c)) h + (W_c − W_d) c + b: one (h₁, dim) matrix and one bias per row, then a batched
        product over the row's tokens. The same function as the concatenation, a quarter of its multiply-adds per
        token and no (B, L, 4·dim) input."""
        if not self.mlp:  # no hidden layer: the output layer reads the concatenation itself
            c = candidate.unsqueeze(1).expand_as(tokens)
            return self.out(torch.cat([tokens, c, tokens - c, tokens * c], dim=-1)).squeeze(-1)
        first = self.mlp[0]
        dim = tokens.shape[-1]
        w_h, w_c, w_d, w_p = (first.weight[:, k * dim:(k + 1) * dim] for k in range(4))  # each (h1, dim)
        per_row = (w_h + w_d).unsqueeze(0) + w_p.unsqueeze(0) * candidate.unsqueeze(1)  # (B, h1, dim)
        bias = candidate @ (w_c - w_d).t() + first.bias  # (B, h1)
        hidden = torch.baddbmm(bias.unsqueeze(1), tokens, per_row.transpose(1, 2))  # (B, L, h1)
        return self.out(self.mlp[1:](hidden)).squeeze(-1)


class TargetAttention(nn.Module):
    """(table (R, dim), ids (B, C)) -> (B, output_dim): for each attended bag, its tokens pooled with the activation
    unit's weights against the candidate, and (``dot``) that pooled vector's dot product with the candidate. With
    ``history_loss`` λ > 0, training also learns the bags' embeddings from co-occurrence (``models.colistening``)."""

    def __init__(self, candidate: int, bag_slices: Sequence[tuple[int, int]], dim: int, hidden: Sequence[int],
                 dot: bool, history_loss: float = 0.0) -> None:
        super().__init__()
        if not bag_slices:
            raise ValueError("target attention needs at least one bag")
        self.units = nn.ModuleList(ActivationUnit(dim, hidden) for _ in bag_slices)
        columns = [candidate] + [c for start, stop in bag_slices for c in range(start, stop)]
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.int64), persistent=False)
        # the bags' places in the gathered (1 + Σ L) columns, after the candidate
        self.spans, at = [], 1
        for start, stop in bag_slices:
            self.spans.append((at, at + stop - start))
            at += stop - start
        self.dot = dot
        self.history_loss = history_loss
        self.output_dim = len(bag_slices) * (dim + int(dot))

    def forward(self, table: torch.Tensor, ids: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        """The attended bags of ``ids`` read from ``table`` (the embedder's weight) in one gather; ``sparse`` makes its
        gradient row-sparse, for the lazy optimizer. (B, C) -> (B, output_dim)."""
        rows = ids.index_select(1, self.columns).long()  # (B, 1 + Σ L): the candidate, then every bag's tokens
        embedded = nn.functional.embedding(rows, table, padding_idx=PADDING_ROW, sparse=sparse)
        candidate = embedded[:, 0]  # (B, dim)
        present = (rows != PADDING_ROW).to(embedded.dtype)
        out, auxiliary = [], []
        learns_history = self.history_loss > 0 and self.training and torch.is_grad_enabled()
        for unit, (start, stop) in zip(self.units, self.spans):
            tokens = embedded[:, start:stop]  # (B, L, dim)
            weights = unit(tokens, candidate) * present[:, start:stop]  # (B, L), 0 on padding
            pooled = (weights.unsqueeze(-1) * tokens).sum(1)  # (B, dim)
            out.append(pooled)
            if self.dot:
                out.append((pooled * candidate).sum(1, keepdim=True))  # (B, 1)
            if learns_history and (loss := colistening_loss(tokens, rows[:, start:stop],
                                                            present[:, start:stop])) is not None:
                auxiliary.append(loss)
        attended = torch.cat(out, dim=1)
        return inject(attended, sum(auxiliary), self.history_loss) if auxiliary else attended


def target_attention(config: AttentionConfig, layout: FeatureLayout, dim: int) -> TargetAttention | None:
    """The attention ``config`` asks for on ``layout``, or None when it is off. A bag or candidate the log lacks is
    skipped as the encoder skips an absent feature (so one configuration serves logs with and without the column);
    attention is off when nothing is left. A present bag that does not share the candidate's vocabulary is an error:
    its tokens could not be compared with the candidate."""
    bags = [(name, start, stop) for name, start, stop in layout.bags if name in config.bags]
    if not bags or config.candidate not in layout.categorical:
        return None
    unshared = [name for name, _, _ in bags if layout.offsets[name] != layout.offsets[config.candidate]]
    if unshared:
        raise UnitargetError(f"model.attention.bags {unshared} were encoded with their own vocabulary, not "
                             f"{config.candidate!r}'s; encode with FeatureEncoder(shared=Config.shared_vocabularies())")
    return TargetAttention(layout.categorical.index(config.candidate), [(start, stop) for _, start, stop in bags],
                           dim, config.hidden, config.dot, config.history_loss)
