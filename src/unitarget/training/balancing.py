"""Loss balancing strategies: how per-task losses become gradients.

Each strategy is composed with any architecture. It receives the per-task losses L_t (already
masked by ``TaskSet``) and the shared parameters explicitly, runs the backward pass, and returns
the scalar it optimised, for logging. Strategies are ``nn.Module``s: the loop optimises their
parameters with the model's and checkpoints their ``state_dict`` for ``--resume``.

- ``StaticWeights``: Σ_t λ_t L_t, the paper's objective (λ_t = 1 in its deployment).
- ``UncertaintyWeighting``: Kendall, Gal & Cipolla, CVPR 2018.
- ``GradNorm``: Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018.
- ``PCGrad``: Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class SharedParameters:
    """What every task's loss reaches: the shared parameters that learn (PCGrad projects their
    gradients) and the last shared layer's weight (GradNorm's W; None when nothing shared learns,
    e.g. a frozen encoder). The model names both (``MultiTaskModel.shared_parameters`` and
    ``last_shared_weight``): no strategy guesses a layer from parameter order."""

    parameters: Sequence[nn.Parameter]
    last_layer: nn.Parameter | None


class LossBalancer(Protocol):
    """What the training loop needs of a loss-balancing strategy: its parameters and state (optimised and checkpointed
    with the model's), the backward pass, and a hook after each optimiser step."""

    def parameters(self):
        """The strategy's learnable parameters (none for static weights), optimised with the model's."""
        ...

    def state_dict(self):
        """The strategy's state (buffers and parameters), saved in the checkpoint for ``--resume``."""
        ...

    def load_state_dict(self, state):
        """Restore the state ``state_dict`` returned, when a run resumes."""
        ...

    def after_step(self) -> None:
        """Called after each optimiser step."""
        ...

    def backward(self, task_losses: torch.Tensor, shared: SharedParameters) -> torch.Tensor:
        """Backpropagate (T,) per-task losses; return the scalar objective (detached)."""
        ...


class StaticWeights(nn.Module):
    """L = Σ_t λ_t L_t."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights.clone())

    def after_step(self) -> None:
        """Nothing to do: the weights λ_t are fixed."""
        pass

    def backward(self, task_losses: torch.Tensor, shared: SharedParameters) -> torch.Tensor:
        """Backpropagate L = Σ_t λ_t L_t through everything; return L detached."""
        loss = (self.weights * task_losses).sum()
        loss.backward()
        return loss.detach()


class UncertaintyWeighting(StaticWeights):
    """L = Σ_t λ_t (exp(−s_t) L_t + s_t), s_t = log σ_t² learned per task.

    A task whose loss stays high (noisy labels) gets a larger σ_t and so a smaller weight; the
    + s_t term stops σ_t from growing without bound.
    """

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__(weights)
        self.log_variance = nn.Parameter(torch.zeros(len(weights)))

    def backward(self, task_losses: torch.Tensor, shared: SharedParameters) -> torch.Tensor:
        """Backpropagate L = Σ_t λ_t (exp(−s_t) L_t + s_t), into the model and the log-variances s_t alike; return L
        detached."""
        s = self.log_variance
        loss = (self.weights * (torch.exp(-s) * task_losses + s)).sum()
        loss.backward()
        return loss.detach()


class GradNorm(StaticWeights):
    """Learned task weights w_t that equalise gradient norms at the last shared layer W.

    G_t = ‖∇_W w_t L_t‖, r_t = (L_t / L_t(0)) / mean_j(L_j / L_j(0)); the weights minimise
    Σ_t |G_t − mean(G) · r_t^α| (the target is held constant), then are renormalised to sum to T.
    The model itself is updated with Σ_t λ_t w_t L_t.
    """

    def __init__(self, weights: torch.Tensor, alpha: float = 1.5) -> None:
        super().__init__(weights)
        self.alpha = alpha
        self.task_weights = nn.Parameter(torch.ones(len(weights)))
        self.register_buffer("initial_losses", torch.zeros(len(weights)))

    def backward(self, task_losses: torch.Tensor, shared: SharedParameters) -> torch.Tensor:
        """Give the model the gradient of Σ_t λ_t w_t L_t and w the gradient of Σ_t |G_t − target_t| (G_t at the last
        shared weight); L_t(0) is recorded on the first call. Without a shared weight the w_t stay fixed."""
        last = shared.last_layer
        if last is None:  # nothing shared learns: no gradient norm to balance, the weights stay
            loss = (self.weights * self.task_weights.detach() * task_losses).sum()
            loss.backward()
            return loss.detach()
        if not bool(self.initial_losses.any()):
            self.initial_losses.copy_(task_losses.detach().clamp(min=1e-8))
        weighted = self.weights * self.task_weights * task_losses
        norms = torch.stack([
            torch.autograd.grad(weighted[t], last, retain_graph=True, create_graph=True)[0].norm()
            for t in range(len(task_losses))
        ])
        ratio = task_losses.detach() / self.initial_losses
        target = (norms.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        weight_grad = torch.autograd.grad((norms - target).abs().sum(), self.task_weights, retain_graph=True)[0]
        loss = weighted.sum()
        loss.backward()
        self.task_weights.grad = weight_grad
        return loss.detach()

    def after_step(self) -> None:
        """Keep Σ_t w_t = T (and w_t > 0) after each optimiser step."""
        with torch.no_grad():
            self.task_weights.clamp_(min=1e-3)
            self.task_weights.mul_(len(self.task_weights) / self.task_weights.sum())


class PCGrad(StaticWeights):
    """Project each task's shared gradient off the others' where they conflict (g_t · g_j < 0):
    g_t ← g_t − (g_t · g_j / ‖g_j‖²) g_j, over the other tasks in a random order; the shared
    parameters receive Σ_t of the projected gradients, task towers their own gradients.

    Some gradients belong to no task: those a backward adds by itself (``model.embedding_decay``'s, inside the
    lookup's backward; the co-listening objective's, ``models.colistening``). Each per-task ``autograd.grad`` call
    carries them too, and the full backward once: with a_t = g_t + c for the task's own gradient a_t, and the full
    backward's g = Σ_t a_t + c, the common part is c = (Σ_t g_t − g) / (T − 1). It is taken out before projecting and
    added back once after, unprojected."""

    def __init__(self, weights: torch.Tensor, seed: int = 0) -> None:
        super().__init__(weights)
        self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self) -> torch.Tensor:
        """The generator of the projection orders, saved in ``state_dict``: a resumed run (``--resume``, mid-epoch
        too) draws the orders the uninterrupted one would have."""
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Restore the generator ``get_extra_state`` saved."""
        self.generator.set_state(state)

    def backward(self, task_losses: torch.Tensor, shared: SharedParameters) -> torch.Tensor:
        """Backpropagate Σ_t λ_t L_t, then replace the shared parameters' gradients with the sum of the per-task
        gradients projected off each other where they conflict; return the loss detached."""
        weighted = self.weights * task_losses
        params = list(shared.parameters)
        grads = torch.stack([self._flat_grad(weighted[t], params) for t in range(len(weighted))])  # (T, P)
        loss = weighted.sum()
        loss.backward()
        full = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        common = (grads.sum(0) - full) / (len(grads) - 1) if len(grads) > 1 else torch.zeros_like(full)
        grads -= common
        projected = grads.clone()
        for t in range(len(grads)):
            for j in torch.randperm(len(grads), generator=self.generator).tolist():
                dot = projected[t] @ grads[j]
                if j != t and dot < 0:
                    projected[t] -= dot / grads[j].square().sum().clamp(min=1e-12) * grads[j]
        combined = projected.sum(0) + common
        offset = 0
        for p in params:
            p.grad = combined[offset: offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        return loss.detach()

    @staticmethod
    def _flat_grad(loss: torch.Tensor, shared: Sequence[nn.Parameter]) -> torch.Tensor:
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared)])


def make_balancer(method: str, weights: torch.Tensor, *, alpha: float = 1.5, seed: int = 0) -> LossBalancer:
    """The strategy named by ``LossConfig.method`` (one literal mapping, no registry)."""
    return {
        "static": lambda: StaticWeights(weights),
        "uncertainty": lambda: UncertaintyWeighting(weights),
        "gradnorm": lambda: GradNorm(weights, alpha),
        "pcgrad": lambda: PCGrad(weights, seed),
    }[method]()
