"""Inference-only weight layouts that make batch-1 CPU decoding faster, with the same logits.

Decoding one token is a chain of matrix-vector products: each reads its whole weight once, so the
speed is set by how fast the kernel streams the weight, and torch's kernel for nn.Linear's
(out, in) layout is not the fastest one on CPU. `to_decode_layout` swaps every float nn.Linear
of a GPT for one of:

- `TransposedLinear` (float32): the weight stored (in, out), ``y = b + x @ Wt``, Hugging Face
  GPT-2's Conv1D layout. Same arithmetic (a dot product per output), about 1.3x faster at batch 1
  (docs/performance.md); a tied token embedding then gathers its rows as columns of the head's
  matrix (`TransposedEmbedding`), so that matrix is still stored once.
- `PackedLinear` (bfloat16): the weight reordered once into oneDNN's blocked layout
  (``torch.ops.mkldnn._reorder_linear_weight``), multiplied by ``_linear_pointwise``, the kernels
  torch's own compiler uses for frozen CPU linears. torch's plain bf16 matrix-vector product
  streams bf16 weights slower than fp32 ones on this machine; the packed one reads them near the
  memory rate. Its weight is opaque, so a tied embedding keeps its own (row-gathered) copy.

The converted model is for generation only: its state dict is not a GPT's (save the original).
`decode_layout_kind` says which layout a model gets (None: leave it as it is: a GPU, a quantised
model, or bf16 without oneDNN), and `generate` calls `to_decode_layout` by default on CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.model.modes import model_device

TRANSPOSED, PACKED = "transposed", "packed"


def packed_linear_available() -> bool:
    """Whether this torch build has oneDNN's packed linear ops (CPU builds with mkldnn do)."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_linear_weight")
        and hasattr(mkldnn, "_linear_pointwise")
    )


class TransposedLinear(nn.Module):
    """nn.Linear with its float weight stored transposed, (in, out) contiguous: ``y = b + x @ Wt``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)  # (K, N)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        y = x2 @ self.weight_t if self.bias is None else torch.addmm(self.bias, x2, self.weight_t)
        return y.view(*x.shape[:-1], self.out_features)


class TransposedEmbedding(nn.Module):
    """The token embedding of a tied model whose head is a `TransposedLinear`: rows are looked up
    in the head's (dim, vocab) matrix (a column gather), so the matrix is stored once."""

    def __init__(self, head: TransposedLinear) -> None:
        super().__init__()
        self._head = [head]  # not a submodule: the head owns the tensor

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        wt = self._head[0].weight_t  # (C, V)
        return wt.index_select(1, idx.reshape(-1)).t().reshape(*idx.shape, wt.size(0))  # (..., C)


class PackedLinear(nn.Module):
    """nn.Linear with its weight reordered into oneDNN's blocked layout (see the module docstring).
    Inputs are cast to the weight's dtype and the output back to the input's."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach()
        # batch size hint 1: the layout is chosen for matrix-vector products (any M still works)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        self.register_buffer("packed_weight", packed)
        bias = None if linear.bias is None else linear.bias.detach().to(w.dtype)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.packed_weight
        x2 = x.reshape(-1, self.in_features).to(w.dtype)  # (M, K); the kernel wants a contiguous input
        y = torch.ops.mkldnn._linear_pointwise(x2.contiguous(), w, self.bias, "none", [], "")
        return y.to(x.dtype).view(*x.shape[:-1], self.out_features)


def decode_layout_kind(model: nn.Module) -> str | None:
    """The layout `to_decode_layout` gives ``model``: "transposed" for a float32 GPT on CPU,
    "packed" for a bfloat16 one (where oneDNN is there), None otherwise (GPU, quantised, other
    dtypes or architectures, already converted)."""
    from gptlab.model.quantize import is_quantized

    if getattr(model, "decode_layout", None) or is_quantized(model):
        return None
    if getattr(getattr(model, "config", None), "arch", "gpt") != "gpt" or model_device(model).type != "cpu":
        return None
    dtype = model.lm_head.weight.dtype if isinstance(model.lm_head, nn.Linear) else None
    if dtype == torch.float32:
        return TRANSPOSED
    if dtype == torch.bfloat16 and packed_linear_available():
        return PACKED
    return None


@torch.no_grad()
def to_decode_layout(model: nn.Module, kind: str | None = None) -> nn.Module:
    """Convert, in place, every float nn.Linear of a GPT (and a tied head + embedding) to the
    ``kind`` layout (default: `decode_layout_kind`; nothing happens where that is None); returns
    the model in eval mode. The logits are the same up to float rounding. Not for training or saving."""
    from gptlab.model.quantize import linear_names, replace_module

    kind = decode_layout_kind(model) if kind is None else kind
    if kind is None:
        return model.eval()
    if kind not in (TRANSPOSED, PACKED):
        raise ValueError(f"unknown decode layout {kind!r}")
    tied = bool(getattr(model.config, "tie_weights", False)) and isinstance(model.lm_head, nn.Linear)
    layer = TransposedLinear if kind == TRANSPOSED else PackedLinear
    for name in linear_names(model):
        replace_module(model, name, layer(model.get_submodule(name)))
    if (
        tied and kind == TRANSPOSED
    ):  # one (C, V) matrix for both: the head reads it whole, the lookup a column
        model.transformer["wte"] = TransposedEmbedding(model.lm_head)
    elif tied:  # the packed matrix is opaque: the embedding keeps its weight, no longer shared
        model.transformer.wte.weight = nn.Parameter(
            model.transformer.wte.weight.detach(), requires_grad=False
        )
    model.decode_layout = kind
    return model.eval()
