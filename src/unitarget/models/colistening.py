"""The co-listening objective: predict a held-out show of each listener's history from the rest of it.

A user's taste for a candidate is mostly "is it like what they stream and follow", and target attention reads it
as dot products between the candidate's embedding and the history's (``models.attention``). Those embeddings are
learned from the impressions' labels alone unless something else teaches them: a few dozen impressions per user
with a few per cent positives, against a history of many shows per user on every row. The history is itself the
densest evidence of taste there is: shows that the same people stream are alike, which is what collaborative
filtering and item2vec (Barkan & Koenigstein 2016) learn from co-occurrence. ``model.attention.history_loss`` = λ
adds, in training, λ times this loss over every attended bag:

    for each row b whose bag has at least two tokens: hold out one token t_b at random,
    context  u_b = the mean embedding of the bag's other tokens,
    L = mean_b [ −log softmax_j (u_b · e_{t_j}) at j = b ]      j over the batch's held-out tokens

an in-batch softmax (Yi et al. 2019): the other rows' held-out shows are the negatives, so they are drawn about
as often as shows occur in histories and the score learns co-occurrence beyond popularity (popularity the model
reads elsewhere). A negative that is the same show as the row's own target ("accidental hit") is masked out.

The loss reads the attention's own gather of the bag (the rows after feature dropout) and adds its gradient
inside the backward (``inject``), as ``model.embedding_decay`` does: one forward, one backward, so DDP averages
it with the tasks' gradient, every loss balancer sees the same objective (PCGrad takes it out of the per-task
gradients it projects and adds it once, ``training.balancing``), and the logged loss stays the tasks'. Under DDP
each rank contrasts its own B/N rows, so a run over N ranks has N times fewer negatives per row than one process
with the same global batch. Inference, export and serving never compute it.
"""

from __future__ import annotations

import torch


def colistening_loss(tokens: torch.Tensor, ids: torch.Tensor, present: torch.Tensor) -> torch.Tensor | None:
    """The in-batch softmax loss of the module docstring for one bag: ``tokens`` (B, L, dim) its embeddings,
    ``ids`` (B, L) its rows of the table, ``present`` (B, L) 1 on real tokens and 0 on padding. None when fewer
    than two rows have two tokens or more (nothing to contrast)."""
    counts = present.sum(1)
    rows = (counts >= 2).nonzero().squeeze(1)
    if len(rows) < 2:
        return None
    tokens, ids, present, counts = tokens[rows], ids[rows], present[rows], counts[rows]
    # One present token per row, uniformly: the largest of uniform draws over the present positions.
    held = torch.where(present > 0, torch.rand(present.shape), -1.0).argmax(1)  # (n,)
    target = tokens[torch.arange(len(rows)), held]  # (n, dim)
    context = ((tokens * present.unsqueeze(-1)).sum(1) - target) / (counts - 1).unsqueeze(1)
    scores = context @ target.t()  # (n, n): row b's context against every row's held-out show
    target_ids = ids[torch.arange(len(rows)), held]
    hit = (target_ids.unsqueeze(0) == target_ids.unsqueeze(1)).fill_diagonal_(False)
    scores = scores.float().masked_fill(hit, float("-inf"))
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(rows)))


class _Inject(torch.autograd.Function):
    """Identity on ``carrier``; its backward also sends gradient ``weight`` into ``loss``."""

    @staticmethod
    def forward(ctx, carrier: torch.Tensor, loss: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        ctx.loss_shape, ctx.loss_dtype = loss.shape, loss.dtype
        return carrier.view_as(carrier)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, torch.full(ctx.loss_shape, ctx.weight, dtype=ctx.loss_dtype), None


def inject(carrier: torch.Tensor, loss: torch.Tensor, weight: float) -> torch.Tensor:
    """``carrier`` unchanged, such that any backward through it adds the gradient of ``weight · loss``: an auxiliary
    objective that joins the tasks' one backward without a loss term of its own (the module docstring)."""
    return _Inject.apply(carrier, loss, weight)
