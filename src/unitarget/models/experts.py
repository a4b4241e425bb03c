"""Mixture-of-experts encoders: MMoE, PLE/CGC and CAMoE, one mechanism with three settings.

All three are stacks of *extraction levels*. A level holds a bank of shared experts and one bank
per *owner*; each reader's softmax gate mixes the shared experts with its owner's:

    e_k(h) = expert MLP k,   w_r(h) = softmax(W_r h) ∈ Δ^{E_r},   z_r = Σ_k w_{r,k} · e_k(h_k)

where expert k reads the representation of its owner (h_shared for shared experts, h_o for owner
o's). At every level but the last the readers are the owners plus a shared gate over *all* experts
(PLE's progressive routing); at the last level the readers are the tasks, and each task's z_t
feeds its tower. The three encoders differ only in who owns experts:

- MMoE (Ma et al., KDD 2018): nobody; one level of shared experts, one gate per task.
- PLE (Tang et al., RecSys 2020): every task owns its experts; CGC is PLE with one level.
- CAMoE (Verma et al., KDD 2025): every *modality group* owns experts (audio; video and display),
  shared by the tasks of that group; tasks of no group read the shared experts only.

The encoder returns one (B, H) tensor per task, the list form ``MultiTaskModel`` accepts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unitarget.models import kernels

SHARED = "__shared__"  # key of the shared representation and the shared expert bank


class ExpertBank(nn.Module):
    """n expert MLPs with widths ``hidden`` on one input: (B, F) -> (B, n, H).

    Layer 1 of all experts is one (F, n·h₁) matmul, later layers one batched matmul over experts:
    same function as n separate ``mlp``s (Linear -> BatchNorm -> ReLU -> Dropout), fewer calls.
    """

    def __init__(self, input_dim: int, n: int, hidden: Sequence[int], *, batch_norm: bool,
                 dropout: float) -> None:
        super().__init__()
        self.n, self.widths = n, tuple(hidden)
        self.first = kernels.Linear(input_dim, n * hidden[0])
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for w_in, w_out in zip(hidden, hidden[1:]):
            bound = 1 / math.sqrt(w_in)  # nn.Linear's default initialisation, per expert
            self.weights.append(nn.Parameter(torch.empty(n, w_in, w_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, w_out).uniform_(-bound, bound)))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n * w) if batch_norm else nn.Identity() for w in hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_dim = hidden[-1]

    def last_weight(self) -> nn.Parameter:
        """The weight of the experts' last layer."""
        return self.weights[-1] if len(self.weights) else self.first.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, n, H): every expert's MLP on the same input, layer 1 as one matmul and later layers as one
        batched einsum over experts."""
        batch = x.shape[0]
        h = self.dropout(torch.relu(self.norms[0](self.first(x))))  # (B, n·h₁)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases), start=1):
            h = torch.einsum("bni,nio->bno", h.view(batch, self.n, -1), weight) + bias  # (B, n, h_l)
            h = self.dropout(torch.relu(self.norms[layer](h.reshape(batch, -1))))
        return h.view(batch, self.n, self.output_dim)  # (B, n, H)


def _mix(weights: torch.Tensor, pools: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_k w_k e_k over experts laid out as consecutive pools: (B, E), [(B, n_i, H)] -> (B, H).

    Elementwise product and sum: about 25 % faster on CPU than a batched (1 × E)(E × H) matmul,
    whose per-row matrices are too small for bmm."""
    out, start = None, 0
    for pool in pools:
        part = (weights[:, start:start + pool.shape[1]].unsqueeze(-1) * pool).sum(1)
        out = part if out is None else out + part
        start += pool.shape[1]
    return out


class ExtractionLevel(nn.Module):
    """One CGC level: shared experts, experts per owner, one softmax gate per reader.

    ``readers`` maps each reader to its owner (None: shared experts only); a reader's gate reads
    its owner's representation and mixes the shared experts then its owner's. With
    ``shared_gate`` a gate over every expert also produces the next level's shared representation.
    """

    def __init__(self, input_dim: int, owners: Sequence[str], readers: Mapping[str, str | None], *,
                 shared: int, specific: int, hidden: Sequence[int], shared_gate: bool,
                 batch_norm: bool, dropout: float) -> None:
        super().__init__()
        self.readers = dict(readers)
        counts = {o: specific for o in owners if specific > 0} | ({SHARED: shared} if shared > 0 else {})
        for reader, owner in self.readers.items():
            if shared + (specific if owner is not None else 0) == 0:
                raise ValueError(f"{reader!r} has no expert to read: give it a group or shared experts")
        self.gates = nn.ModuleDict(
            {r: kernels.Linear(input_dim, self._pool_size(o, counts)) for r, o in self.readers.items()}
        )
        if shared_gate:
            self.gates[SHARED] = kernels.Linear(input_dim, sum(counts.values()))
        # (registered after the gates, the shared bank last: the order fixes the initialisation)
        self.banks = nn.ModuleDict({
            o: ExpertBank(input_dim, n, hidden, batch_norm=batch_norm, dropout=dropout)
            for o, n in sorted(counts.items(), key=lambda item: item[0] == SHARED)
        })

    @staticmethod
    def _pool_size(owner: str | None, counts: Mapping[str, int]) -> int:
        return counts.get(SHARED, 0) + (counts.get(owner, 0) if owner is not None else 0)

    def _pools(self, owner: str | None, experts: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        keys = [SHARED] + ([owner] if owner is not None else [])
        return [experts[k] for k in keys if k in experts]

    def forward(self, inputs: Mapping[str, torch.Tensor], readers: Sequence[str] | None = None,
                gates: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """inputs: owner (or SHARED) -> (B, F); returns reader (and SHARED) -> (B, H).

        ``readers`` restricts the work to those readers (inference-time expert masking): banks no
        selected reader needs are skipped. ``gates``, if given, collects each gate's (B, E) weights.
        """
        wanted = list(self.readers) if readers is None else list(readers)
        if SHARED in self.gates:
            wanted.append(SHARED)
        owners = set(self.banks) if SHARED in wanted else {SHARED, *(self.readers[r] for r in wanted)}
        experts = {o: bank(inputs.get(o, inputs[SHARED])) for o, bank in self.banks.items() if o in owners}
        out = {}
        for reader in wanted:
            owner = self.readers.get(reader)
            weights = torch.softmax(self.gates[reader](inputs.get(owner, inputs[SHARED])), dim=-1)  # (B, E_r)
            pools = list(experts.values()) if reader == SHARED else self._pools(owner, experts)
            out[reader] = _mix(weights, pools)  # (B, H)
            if gates is not None:
                gates[reader] = weights
        return out


class GatedExperts(nn.Module):
    """Stacked extraction levels: (B, F) -> T × (B, H), one mixture per task (module docstring).

    ``groups`` maps a task to the owner of its specific experts; tasks absent from it read the
    shared experts only. ``levels`` - 1 levels route owners' representations before the last.
    """

    def __init__(self, input_dim: int, tasks: Sequence[str], groups: Mapping[str, str], *, shared: int,
                 specific: int, hidden: Sequence[int], levels: int, batch_norm: bool, dropout: float) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.groups = {t: groups[t] for t in self.tasks if t in groups}
        owners = list(dict.fromkeys(self.groups.values()))
        self.levels = nn.ModuleList()
        width = input_dim
        for level in range(levels):
            last = level == levels - 1
            readers = {t: self.groups.get(t) for t in self.tasks} if last else {o: o for o in owners}
            self.levels.append(ExtractionLevel(
                width, owners, readers, shared=shared, specific=specific, hidden=hidden,
                shared_gate=not last, batch_norm=batch_norm, dropout=dropout,
            ))
            width = hidden[-1]
        self.output_dim = hidden[-1]

    def forward(self, x: torch.Tensor, tasks: Sequence[int] | None = None) -> list[torch.Tensor]:
        """x (B, F) -> one (B, H) per task, or per task index in ``tasks`` (computing only those)."""
        return self._run(x, tasks, None)

    def last_shared_weight(self) -> nn.Parameter | None:
        """The last layer of the last level's shared experts: the last layer every task reads
        (GradNorm's W); None without shared experts (every task reads only its own group's)."""
        bank = self.levels[-1].banks[SHARED] if SHARED in self.levels[-1].banks else None
        return None if bank is None else bank.last_weight()

    def gate_weights(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every gate's (B, E) softmax weights, keyed "level<l>/<reader>"; each row sums to one."""
        gates: dict[str, torch.Tensor] = {}
        self._run(x, None, gates)
        return gates

    def _run(self, x: torch.Tensor, tasks: Sequence[int] | None,
             gates: dict[str, torch.Tensor] | None) -> list[torch.Tensor]:
        names = self.tasks if tasks is None else [self.tasks[i] for i in tasks]
        h = {SHARED: x}  # every owner reads x at the first level
        for index, level in enumerate(self.levels):
            last = index == len(self.levels) - 1
            collected: dict[str, torch.Tensor] | None = {} if gates is not None else None
            h = level(h, readers=names if last else None, gates=collected)
            if gates is not None:
                gates |= {f"level{index}/{reader}": w for reader, w in collected.items()}
        return [h[name] for name in names]


def mmoe(input_dim: int, tasks: Sequence[str], *, experts: int, hidden: Sequence[int],
         batch_norm: bool, dropout: float) -> GatedExperts:
    """MMoE (Ma et al., KDD 2018): z_t = Σ_k softmax(W_t x)_k · e_k(x) over shared experts."""
    return GatedExperts(input_dim, tasks, {}, shared=experts, specific=0, hidden=hidden, levels=1,
                        batch_norm=batch_norm, dropout=dropout)


def ple(input_dim: int, tasks: Sequence[str], *, shared: int, specific: int, levels: int,
        hidden: Sequence[int], batch_norm: bool, dropout: float) -> GatedExperts:
    """PLE (Tang et al., RecSys 2020): shared experts plus ``specific`` experts per task, routed
    progressively over ``levels`` extraction levels (CGC when ``levels`` = 1)."""
    return GatedExperts(input_dim, tasks, {t: t for t in tasks}, shared=shared, specific=specific,
                        hidden=hidden, levels=levels, batch_norm=batch_norm, dropout=dropout)


def camoe(input_dim: int, tasks: Sequence[str], groups: Mapping[str, str], *, shared: int, specific: int,
          levels: int, hidden: Sequence[int], batch_norm: bool, dropout: float) -> GatedExperts:
    """CAMoE's modality-aware mixture (Verma et al., KDD 2025): experts shared by every format plus
    ``specific`` experts per modality group (``groups``: task -> group), one gate per task. The
    paper's DCN-v2 crosses sit before it (``models.cross``), its loss mask in ``TaskSet``."""
    return GatedExperts(input_dim, tasks, groups, shared=shared, specific=specific, hidden=hidden,
                        levels=levels, batch_norm=batch_norm, dropout=dropout)
