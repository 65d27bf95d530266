"""Bottleneck adapters: small residual MLPs inserted into each frozen block.

An adapter maps h to h + up(act(down(h))), down: C -> C / reduction, up: back to C. Two placements,
named as in the ``adapters`` library:

- ``houlsby`` (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP"): one after
  the attention sublayer's output and one after the MLP's, each before the residual addition;
  SiLU ("swish") between, as that library's ``DoubleSeqBnConfig``.
- ``pfeiffer`` (Pfeiffer et al., 2021, "AdapterFusion"): after the MLP only, ReLU between, as its
  ``SeqBnConfig``: half the parameters, about the same accuracy in their experiments.

``up`` starts at zero, so a new adapter is the identity and the model starts as the base model.
Adapters are attached with forward hooks on ``attn`` / ``mlp`` (their parameters live on the block
as ``adapter_attn`` / ``adapter_mlp``), so the base model's module and tensor names are unchanged.
They cannot be merged into the weights: the non-linearity between ``down`` and ``up`` is new
computation, not a change of an existing matrix.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.errors import GptlabError

KINDS = {"houlsby": ("attn", "mlp"), "pfeiffer": ("mlp",)}
ACTIVATIONS = {"houlsby": nn.SiLU, "pfeiffer": nn.ReLU}


class Bottleneck(nn.Module):
    def __init__(self, width: int, reduction: int, activation: type[nn.Module], like: torch.Tensor) -> None:
        super().__init__()
        hidden = max(1, width // reduction)
        factory = dict(device=like.device, dtype=like.dtype)
        self.down = nn.Linear(width, hidden, **factory)
        self.act = activation()
        self.up = nn.Linear(hidden, width, **factory)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))

    def after(self, module: nn.Module, inputs, output):
        """Forward hook: adapt the sublayer's output (attention returns (output, weights))."""
        if isinstance(output, tuple):
            return (self(output[0]), *output[1:])
        return self(output)


def apply_adapters(gpt: nn.Module, kind: str = "houlsby", reduction: int = 16) -> nn.Module:
    """Freeze ``gpt`` and add a bottleneck adapter (``kind`` placement) to every block (in place)."""
    if kind not in KINDS:
        raise GptlabError(f"adapter kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise GptlabError(f"adapter reduction factor must be a positive integer, got {reduction!r}")
    blocks = getattr(getattr(gpt, "transformer", None), "h", None)
    if blocks is None or not all(hasattr(b, "attn") and hasattr(b, "mlp") for b in blocks):
        raise GptlabError("bottleneck adapters need a transformer (blocks with attn and mlp)")
    if any(hasattr(b, "adapter_mlp") for b in blocks):
        raise GptlabError("the model already has bottleneck adapters; apply them once")
    for p in gpt.parameters():
        p.requires_grad_(False)
    like = next(gpt.parameters())
    for block in blocks:
        for site in KINDS[kind]:
            adapter = Bottleneck(gpt.config.n_embd, reduction, ACTIVATIONS[kind], like)
            block.add_module(f"adapter_{site}", adapter)
            # a bound method: copy.deepcopy of the block rebinds it to the copied adapter
            getattr(block, site).register_forward_hook(adapter.after)
    return gpt


__all__ = ["KINDS", "Bottleneck", "apply_adapters"]
