"""Mixture of experts: the MLP of a block replaced by ``n_experts`` MLPs and a router (``mlp = "moe"``).

Each token goes to the ``top_k`` experts its router scores highest (Shazeer et al., 2017; Switch
Transformer, Fedus et al., 2021; Mixtral, Jiang et al., 2024):

    p = softmax(router(x))                  (N, E): N tokens, E experts
    chosen = the top_k experts of p         (N, k)
    y = sum over chosen e of gate_e * expert_e(x)

The gate of a chosen expert is its router probability p_e with top_k = 1 (Switch: the router
learns from the output through it) and p_e renormalised over the chosen experts with top_k > 1
(Mixtral: the gates sum to 1). With one expert, p = 1 and the layer is exactly the dense MLP.

Capacity: none (dropless, as Mixtral and MegaBlocks): every token reaches all of its top_k
experts however many others chose the same one; no token is dropped or passed through, so the
output never depends on the other tokens of the batch. The price is uneven work per expert,
which the load-balancing loss keeps small. Every expert runs on every forward, on no tokens if
none chose it, so every parameter is in the graph (DDP needs no find_unused_parameters).

Load balance (Switch Transformer eq. 4): ``E * sum_e f_e * P_e``, with f_e the fraction of the
N * top_k token-to-expert assignments that went to e and P_e the mean router probability of e.
It is 1 when both are uniform and grows as the router favours a few experts; only P carries a
gradient. (Hugging Face's Mixtral loss is the same times top_k.) The trainer adds
``moe_aux_loss`` times the sum over layers to the training loss (`aux_loss`) and logs the
fraction of tokens each expert received (`tokens_per_expert`, gathered by `RouterStats`); the
fine-tuning loops (gptlab.finetune.loop: classify, instruct, classifier distillation) do the
same, once per epoch in their metrics.jsonl. The logged loss stays the task's loss. DP-SGD
refuses MoE models (per-example gradients through data-dependent routing are not supported).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.model.config import GPTConfig


def load_balance_loss(probs: torch.Tensor, chosen: torch.Tensor, n_experts: int) -> torch.Tensor:
    """``E * sum_e f_e * P_e`` (module doc) from router probabilities (N, E) and choices (N, k)."""
    assigned = F.one_hot(chosen, n_experts).float().sum(dim=1)  # (N, E): 1 where e was chosen
    f = assigned.mean(dim=0) / chosen.size(1)  # (E,) fraction of assignments; sums to 1
    P = probs.float().mean(dim=0)  # (E,) mean router probability
    return n_experts * (f * P).sum()


class MixtureOfExperts(nn.Module):
    def __init__(self, config: GPTConfig, make_expert: Callable[[GPTConfig], nn.Module]) -> None:
        super().__init__()
        self.top_k = config.top_k
        self.router = nn.Linear(config.n_embd, config.n_experts, bias=False)
        self.experts = nn.ModuleList(make_expert(config) for _ in range(config.n_experts))
        # of the last forward, read by `aux_loss` and `tokens_per_expert`
        self.balance_loss: torch.Tensor | None = None  # () with gradient
        self.routed: torch.Tensor | None = None  # (E,) tokens each expert received

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(B * T, C)  # (N, C)
        probs = self.router(flat).float().softmax(dim=-1)  # (N, E)
        gate, chosen = probs.topk(self.top_k, dim=-1)  # (N, k) each
        if self.top_k > 1:
            gate = gate / gate.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, rank = (chosen == e).nonzero(as_tuple=True)  # the tokens that chose e, (n_e,) each
            y = expert(flat[token]) * gate[token, rank, None]  # (n_e, C); n_e may be 0 (module doc)
            out.index_add_(0, token, y.to(out.dtype))
        self.balance_loss = load_balance_loss(probs, chosen, len(self.experts))
        self.routed = F.one_hot(chosen, len(self.experts)).sum(dim=(0, 1)).detach()
        return out.view(B, T, C)


def moe_layers(model: nn.Module) -> list[MixtureOfExperts]:
    return [m for m in model.modules() if isinstance(m, MixtureOfExperts)]


def aux_loss(model: nn.Module) -> torch.Tensor | float:
    """``moe_aux_loss`` times the load-balancing losses of the last forward, summed over layers;
    0.0 for a model without experts (what the trainer adds to the training loss)."""
    layers = moe_layers(model)
    if not layers:
        return 0.0
    return model.config.moe_aux_loss * torch.stack([m.balance_loss for m in layers]).sum()


def tokens_per_expert(model: nn.Module) -> torch.Tensor | None:
    """Tokens each expert of each MoE layer received in the last forward, (layers, E) (summed
    over top_k choices), or None for a model without experts."""
    layers = moe_layers(model)
    return torch.stack([m.routed for m in layers]) if layers else None


class RouterStats:
    """The routers of a mixture-of-experts model over a window of updates (between two log steps
    of the trainer, over an epoch of a fine-tune): ``moe_aux_loss``, the mean over forwards of
    the auxiliary loss added to the training loss (coefficient included), and
    ``expert_fraction``, per MoE layer the fraction of token assignments each expert got.
    Tensors until recorded: no host sync per step."""

    def __init__(self) -> None:
        self.aux, self.routed, self.batches = 0.0, None, 0

    def add(self, aux: torch.Tensor | float, routed: torch.Tensor | None) -> None:
        if routed is not None:
            self.aux = self.aux + aux.detach()
            self.routed = routed if self.routed is None else self.routed + routed
            self.batches += 1

    def record(self) -> dict[str, Any]:
        """The log entries, and a fresh window; empty for a model without experts."""
        if self.routed is None:
            return {}
        routed = self.routed.float()
        out = {
            "moe_aux_loss": float(self.aux) / self.batches,
            "expert_fraction": (routed / routed.sum(dim=-1, keepdim=True)).round(decimals=4).tolist(),
        }
        self.aux, self.routed, self.batches = 0.0, None, 0
        return out
