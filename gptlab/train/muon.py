"""Muon (Keller Jordan 2024, "Muon: an optimizer for hidden layers in neural networks"), with
AdamW for the parameters it is not meant for, as modded-nanogpt trains its speedrun.

A hidden matrix W (attention and MLP projections) steps along the orthogonalised momentum:

    B = mu B + (1 - mu) g                       momentum (a running mean of the gradient)
    U = (1 - mu) g + mu B                       Nesterov: the look-ahead, as torch/Keller write it
    O = NS5(U) ~ U' V^T   where U S V^T = U     Newton-Schulz: every singular value pushed to ~1
    W = W (1 - lr wd) - lr * scale(W) * O

so every direction the momentum points in moves by about the same amount, whatever the gradient's
conditioning. ``scale`` keeps the update's RMS consistent across shapes: "original" (Keller's,
modded-nanogpt's) is ``sqrt(max(1, rows / cols))`` for a (rows, cols) = (out, in) weight;
"match_rms_adamw" (Moonshot, "Muon is scalable for LLM training") is ``0.2 sqrt(max(rows, cols))``,
which makes the update's RMS ~0.2 like AdamW's so AdamW's lr and decay carry over.

The split (`muon_param_groups`): 2-D parameters go to Muon, except the embeddings (every
nn.Embedding: token, position, value embeddings) and the output head (a module named ``lm_head``
or ``head``): those are lookups/readouts whose rows are updated independently, and Muon's
orthogonalisation across rows does not suit them (Keller's note; modded-nanogpt does the same).
They, the norm gains and the biases step with AdamW; parameters of other ranks (a 3-D stack of
experts) too. The AdamW groups take ``optim.lr`` and ``optim.weight_decay`` (decay on the
embedding/head matrices, not on 1-D tensors); the Muon group takes ``optim.muon_lr`` (0.02, as
Keller's) and ``optim.muon_weight_decay``. The schedule scales both alike: the Muon group's
``lr_scale`` is ``muon_lr / lr`` (`gptlab.train.optim.set_lr`).

Newton-Schulz runs in bfloat16, as the references do (the quintic iteration tolerates it); its
coefficients (a, b, c) = (3.4445, -4.7750, 2.0315) maximise the slope at 0 so 5 steps suffice, at
the price of not converging: every singular value above ~0.3% of the Frobenius norm lands in
[0.68, 1.2], not at 1 (smaller ones stay smaller; tests/train/test_muon.py checks this against an
SVD). tests/train/test_muon.py checks the update against
torch.optim.Muon step by step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gptlab.errors import GptlabError
from gptlab.train.optim import adam_update

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's / modded-nanogpt's quintic
NS_EPS = 1e-7  # floor of the Frobenius norm the input is divided by
ADJUST_LR = ("original", "match_rms_adamw")
HEAD_NAMES = ("lm_head", "head")


def newton_schulz(
    g: torch.Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """An approximation of ``U V^T`` for ``g = U S V^T`` (the nearest semi-orthogonal matrix),
    in ``dtype``, by ``steps`` iterations of ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``:
    the odd polynomial ``a s + b s^3 + c s^5`` applied to each singular value s. Dividing by the
    Frobenius norm first puts every s in [0, 1], where the polynomial pushes it towards 1."""
    if g.dim() != 2:
        raise GptlabError(f"Newton-Schulz needs a matrix, got shape {tuple(g.shape)}")
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:  # iterate on the wide side: A is (min, min), the cheaper Gram matrix
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.addmm(x, poly, x, beta=a)  # a X + (b A + c A^2) X
    return x.T if tall else x


def lr_multiplier(shape: torch.Size, adjust_lr: str) -> float:
    """How much more than ``lr`` a (rows, cols) matrix steps: see the module docstring."""
    rows, cols = shape[0], shape[1]
    if adjust_lr == "original":
        return math.sqrt(max(1.0, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))


class Muon(torch.optim.Optimizer):
    """Muon on the groups with ``use_muon=True`` (2-D parameters only), AdamW on the others.

    Muon groups: ``lr``, ``weight_decay`` (decoupled, ``W *= 1 - lr wd`` with the unscaled lr, as
    torch.optim.Muon), ``momentum``, ``nesterov``, ``ns_steps``, ``adjust_lr``. AdamW groups:
    ``lr``, ``betas``, ``eps``, ``weight_decay``. State: one momentum buffer per matrix (half of
    AdamW's two moments) and AdamW's moments for the rest."""

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, adjust_lr="original"):
        if not 0 <= momentum < 1:
            raise GptlabError(f"Muon momentum must be in [0, 1), got {momentum}")
        if adjust_lr not in ADJUST_LR:
            raise GptlabError(f"Muon adjust_lr must be one of {', '.join(ADJUST_LR)}, got {adjust_lr!r}")
        defaults = dict(
            lr=lr,
            weight_decay=0.0,
            use_muon=True,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adjust_lr=adjust_lr,
            betas=(0.9, 0.95),
            eps=1e-8,
            decoupled=True,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["use_muon"] and any(p.dim() != 2 for p in group["params"]):
                raise GptlabError(
                    "Muon steps matrices only: give other parameters a group with use_muon=False"
                )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["use_muon"]:
                    self._muon_update(p, group)
                else:
                    adam_update(p, self.state[p], group)
        return loss

    def _muon_update(self, p: torch.Tensor, group: dict) -> None:
        state, mu = self.state[p], group["momentum"]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.lerp_(p.grad, 1 - mu)  # mu buf + (1 - mu) g
        update = p.grad.lerp(buf, mu) if group["nesterov"] else buf  # (1 - mu) g + mu buf
        ortho = newton_schulz(update, group["ns_steps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(ortho.to(p.dtype), alpha=-group["lr"] * lr_multiplier(p.shape, group["adjust_lr"]))


def muon_param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters split into (Muon's hidden matrices, AdamW matrices that decay:
    embeddings and heads, AdamW tensors that do not decay: 1-D gains and biases). A tied weight
    (the embedding reused as the head) appears once, with AdamW."""
    adamw_ids = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) or name.rsplit(".", 1)[-1] in HEAD_NAMES:
            adamw_ids.update(id(p) for p in module.parameters())
    hidden, embed, no_decay = [], [], []
    for p in {id(p): p for p in model.parameters() if p.requires_grad}.values():
        if p.dim() < 2:
            no_decay.append(p)
        elif p.dim() == 2 and id(p) not in adamw_ids:
            hidden.append(p)
        else:
            embed.append(p)
    return hidden, embed, no_decay


def make_muon(model: nn.Module, o) -> Muon:
    """Muon over the hidden matrices and AdamW over the rest, from an OptimSection ``o``."""
    hidden, embed, no_decay = muon_param_groups(model)
    adamw = dict(use_muon=False, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    groups = [
        dict(params=hidden, lr=o.muon_lr, lr_scale=o.muon_lr / o.lr, weight_decay=o.muon_weight_decay),
        dict(params=embed, weight_decay=o.weight_decay, **adamw),
        dict(params=no_decay, weight_decay=0.0, **adamw),
    ]
    return Muon(
        groups,
        momentum=o.muon_momentum,
        nesterov=o.muon_nesterov,
        ns_steps=o.muon_ns_steps,
        adjust_lr=o.muon_adjust_lr,
    )
