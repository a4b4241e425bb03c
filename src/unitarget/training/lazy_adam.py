"""Adam whose embedding-table update touches only the rows a batch used ("lazy" Adam).

The fused embedding table holds most of the model's parameters (1.5 M of 1.7 M by default), but
a batch reads a few tens of thousands of its rows. Dense Adam still reads and writes every row's
weight and both moments at every step, and moves rows the batch never saw along their old
momentum. Here a parameter whose gradient is sparse (``FeatureEmbedder.sparse_grad``) is updated
on the gradient's rows only: their moments and weights step, the other rows stay exactly as they
are, and weight decay (L2, as in ``torch.optim.Adam``) reaches only the rows the batch touched.
Bias correction uses the optimizer's global step, as TensorFlow's LazyAdam does. Dense
parameters go through PyTorch's own Adam (fused kernels), with the same hyper-parameters, so
one optimizer (one learning-rate schedule, one checkpoint) serves both.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam as dense_adam


class LazyAdam(torch.optim.Optimizer):
    """Adam for dense gradients, lazy row-wise Adam for sparse (COO, coalesced) ones."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _state_of(self, param: torch.Tensor) -> dict:
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        """One update of every parameter that has a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            dense = [p for p in group["params"] if p.grad is not None and not p.grad.is_sparse]
            if dense:
                states = [self._state_of(p) for p in dense]
                dense_adam(dense, [p.grad for p in dense], [s["exp_avg"] for s in states],
                           [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
                           fused=True, amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
                           lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
            for param in group["params"]:
                if param.grad is not None and param.grad.is_sparse:
                    self._lazy_step(param, group)
        return loss

    def _lazy_step(self, param: torch.Tensor, group: dict) -> None:
        """Adam on the rows of ``param.grad`` only."""
        state = self._state_of(param)
        state["step"] += 1
        step = float(state["step"])
        beta1, beta2 = group["betas"]
        grad = param.grad if param.grad.is_coalesced() else param.grad.coalesce()
        rows, values = grad.indices()[0], grad.values()
        if group["weight_decay"]:
            values = values.add(param.index_select(0, rows), alpha=group["weight_decay"])
        exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        denom = exp_avg_sq.div_(1 - beta2 ** step).sqrt_().add_(group["eps"])
        param.index_add_(0, rows, exp_avg.div_(denom), alpha=-group["lr"] / (1 - beta1 ** step))
