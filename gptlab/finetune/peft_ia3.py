"""IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning"): learned vectors that rescale activations, element by element.

A wrapped Linear layer either rescales its output (``l * (x W^T + b)``, for the attention's fused
q/k/v projection) or, as a "feed-forward" layer, its input (``(l * x) W^T + b``, for the MLP's
output projection, i.e. the MLP's hidden activations). The vectors start at one, so the adapted
model starts as the base model. The defaults are ``peft``'s for GPT-2 (``c_attn`` and
``mlp.c_proj``, the latter feed-forward); its query rescaling goes beyond the paper's keys and
values, since q, k and v come from one matrix here as in GPT-2.

Merging is exact: an output scale multiplies W's rows and the bias, an input scale W's columns.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError

DEFAULT_TARGETS = ("attn.c_attn", "mlp.c_proj")
DEFAULT_FEEDFORWARD = ("mlp.c_proj",)


class IA3Linear(nn.Module):
    """An nn.Linear (its own ``weight``/``bias`` Parameters, same names) times a learned vector ``ia3_l``."""

    def __init__(self, base: nn.Linear, feedforward: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.feedforward = feedforward
        size = self.in_features if feedforward else self.out_features
        self.ia3_l = nn.Parameter(torch.ones(size, device=base.weight.device, dtype=base.weight.dtype))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        if self.feedforward:
            return F.linear(x * self.ia3_l, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias) * self.ia3_l

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear computing what this layer computes (the scaling merged in)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear = linear.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            if self.merged:
                weight, bias = self.weight, self.bias
            elif self.feedforward:
                weight, bias = self.weight * self.ia3_l[None, :], self.bias
            else:
                weight = self.weight * self.ia3_l[:, None]
                bias = None if self.bias is None else self.bias * self.ia3_l
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        return linear.requires_grad_(False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, feedforward={self.feedforward}"


def ia3_modules(model: nn.Module) -> dict[str, IA3Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, IA3Linear)}


def apply_ia3(
    gpt: nn.Module,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    feedforward: tuple[str, ...] = DEFAULT_FEEDFORWARD,
) -> nn.Module:
    """Freeze ``gpt`` and wrap the Linear layers whose names end with a ``targets`` entry (in place)."""
    if ia3_modules(gpt):
        raise GptlabError("the model already has IA3 vectors; apply IA3 once")
    unknown = set(feedforward) - set(targets)
    if unknown:
        raise GptlabError(f"IA3 feed-forward modules must be targets too: {', '.join(sorted(unknown))}")
    named = dict(gpt.named_modules())
    chosen = {}
    for target in targets:
        hits = [n for n, m in named.items() if n.endswith("." + target) and isinstance(m, nn.Linear)]
        if not hits:
            raise GptlabError(f"IA3 target {target!r} matches no Linear layer of the model")
        chosen |= {n: target in feedforward for n in hits}
    for p in gpt.parameters():
        p.requires_grad_(False)
    for name, is_ff in chosen.items():
        parent, _, child = name.rpartition(".")
        setattr(gpt.get_submodule(parent), child, IA3Linear(named[name], is_ff))
    return gpt


def merge_ia3(gpt: nn.Module) -> nn.Module:
    """Replace every IA3Linear by a plain nn.Linear with its scaling folded in: the base architecture."""
    for name, module in ia3_modules(gpt).items():
        parent, _, child = name.rpartition(".")
        setattr(gpt.get_submodule(parent), child, module.to_linear())
    return gpt


__all__ = ["DEFAULT_FEEDFORWARD", "DEFAULT_TARGETS", "IA3Linear", "apply_ia3", "ia3_modules", "merge_ia3"]
