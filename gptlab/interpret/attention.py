"""What the model attends to: per-head weights, rollout across layers, per-head statistics and
how far the attention distributions move when Q, K and V are perturbed.

Weights come from the model's explicit attention path (``GPT.forward_with_attention``: softmax of
q k^T / sqrt(D), the same numbers the fused kernel computes without materialising them).
Shapes: L layers, H heads, T tokens; one sequence at a time, so weights are (H, T, T) per layer,
row i = how query token i spreads its attention over keys 0..i (causal: the rest is 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.modes import eval_mode


def ids_tensor(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    idx = torch.as_tensor(ids, dtype=torch.long, device=next(model.parameters()).device).flatten()
    if idx.numel() == 0:
        raise GptlabError("the text is empty: there is nothing to attend to")
    if idx.numel() > model.config.block_size:
        raise GptlabError(
            f"{idx.numel()} tokens exceed the model's context of {model.config.block_size}: shorten the text"
        )
    return idx[None]  # (1, T)


@torch.no_grad()
def attention_weights(model: GPT, ids: Sequence[int] | torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention weights for one sequence: a list of L tensors (H, T, T), rows sum to 1."""
    with eval_mode(model):
        _, attns = model.forward_with_attention(ids_tensor(model, ids))
    return [a[0].float() for a in attns]


def attention_rollout(attns: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each
    position through all layers. Per layer the heads are averaged; with ``residual`` the skip
    connection is modelled as 0.5 * A + 0.5 * I (rows renormalised); the layers are multiplied
    from the first up: R = A_L ... A_2 A_1. Returns (T, T), rows summing to 1, causal."""
    if not attns:
        raise GptlabError("attention rollout needs at least one layer of weights")
    T = attns[0].shape[-1]
    rollout = torch.eye(T)
    for a in attns:
        layer = a.float().mean(dim=0)  # (T, T): heads averaged
        if residual:
            layer = 0.5 * layer + 0.5 * torch.eye(T)
            layer = layer / layer.sum(dim=-1, keepdim=True)
        rollout = layer @ rollout
    return rollout


def head_statistics(attns: Sequence[torch.Tensor], ids: Sequence[int] | torch.Tensor) -> list[dict]:
    """One record per (layer, head) with:

    - ``entropy``: mean over queries of -sum p log p (nats); 0 = each query looks at one key.
    - ``mean_distance``: mean over queries of sum_j p_ij (i - j): how far back a head looks.
    - ``first_token``: mean attention on token 0 from queries 1..T-1 (the "attention sink").
    - ``previous_token``: mean attention on token i-1 from queries i >= 1 (previous-token heads).
    - ``duplicate_token``: for queries whose token occurred earlier, the mean attention on those
      earlier occurrences (duplicate-token heads); None if no token repeats.
    Queries 1..T-1 are averaged for the last three (query 0 can only attend to itself)."""
    tokens = torch.as_tensor(ids).flatten().tolist()
    T = len(tokens)
    pos = torch.arange(T)
    distance = (pos[:, None] - pos[None, :]).clamp(min=0).float()  # (T, T): i - j for j <= i
    same = torch.tensor([[tokens[i] == tokens[j] and j < i for j in range(T)] for i in range(T)])
    has_dup = same.any(dim=-1)  # (T,) queries whose token occurred before
    records = []
    for layer, a in enumerate(attns):
        a = a.float()  # (H, T, T)
        entropy = -(a * torch.log(a.clamp_min(1e-12))).sum(-1).mean(-1)  # (H,)
        dist = (a * distance).sum(-1).mean(-1)  # (H,)
        later = slice(1, None)
        first = a[:, later, 0].mean(-1) if T > 1 else torch.full((a.shape[0],), float("nan"))
        prev = a[:, pos[later], pos[later] - 1].mean(-1) if T > 1 else torch.full((a.shape[0],), float("nan"))
        dup = (a * same).sum(-1)[:, has_dup].mean(-1) if has_dup.any() else None  # (H,)
        for head in range(a.shape[0]):
            records.append(
                {
                    "layer": layer,
                    "head": head,
                    "entropy": float(entropy[head]),
                    "mean_distance": float(dist[head]),
                    "first_token": float(first[head]),
                    "previous_token": float(prev[head]),
                    "duplicate_token": None if dup is None else float(dup[head]),
                }
            )
    return records


def _tv_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between attention rows: 0.5 * sum |p - q| over keys, (..., T)."""
    return 0.5 * (p - q).abs().sum(dim=-1)


@torch.no_grad()
def noise_robustness(
    model: GPT, ids: Sequence[int] | torch.Tensor, sigmas: Sequence[float], seed: int = 0, samples: int = 4
) -> list[dict]:
    """How far attention moves when Gaussian noise of scale sigma is added to Q, K and V (the
    output of every layer's ``c_attn``): per sigma, the mean total-variation distance between the
    clean and noisy attention rows of each layer (averaged over heads, queries and ``samples``
    noise draws from ``seed``). Noise in earlier layers propagates, as it would in the model."""
    if any(s < 0 for s in sigmas):
        raise GptlabError(f"noise scales must be >= 0, got {list(sigmas)}")
    clean = attention_weights(model, ids)
    generator = torch.Generator().manual_seed(seed)
    sigma_now = {"value": 0.0}

    def add_noise(module, inputs, output):
        noise = torch.randn(output.shape, generator=generator).to(output.device, output.dtype)
        return output + sigma_now["value"] * noise

    hooks = [block.attn.c_attn.register_forward_hook(add_noise) for block in model.transformer.h]
    try:
        results = []
        for sigma in sigmas:
            sigma_now["value"] = float(sigma)
            totals = torch.zeros(len(clean))
            for _ in range(samples):
                noisy = attention_weights(model, ids)
                totals += torch.stack([_tv_distance(c, n).mean() for c, n in zip(clean, noisy)])
            per_layer = (totals / samples).tolist()
            results.append(
                {"sigma": float(sigma), "tv_per_layer": per_layer, "tv_mean": sum(per_layer) / len(per_layer)}
            )
    finally:
        for h in hooks:
            h.remove()
    return results
