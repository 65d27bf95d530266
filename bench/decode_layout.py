"""Decoding variants that bench/decode.py measures and gptlab itself does not use.

- the fp32 decode layout: every float nn.Linear stored transposed, (in, out), the layout Hugging
  Face's GPT-2 Conv1D uses, whose batch-1 CPU matmul is faster (`to_decode_layout`);
- torch's own dynamic int8 quantisation, the reference gptlab's weight-only int8 is compared
  with (`torch_dynamic_int8`).

Import from a bench script as ``from decode_layout import to_decode_layout`` (bench/ is on the path
of a script run as ``python bench/<name>.py``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from gptlab.model.quantize import linear_names, replace_module


class TransposedLinear(nn.Module):
    """nn.Linear with its float weight stored transposed, (in, out) contiguous: ``y = b + x @ Wt``.

    Same function as nn.Linear, different memory layout. At batch 1 a matmul is a matrix-vector
    product that streams the whole weight; on CPU, torch's kernel for ``x @ Wt`` with Wt (in, out)
    row-major runs about 1.3-2x faster than for nn.Linear's (out, in) layout (measured by
    bench/decode.py; Hugging Face's GPT-2 Conv1D stores (in, out) for the same reason). For
    inference only: its state dict is not a GPT's (use the original model to save)."""

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


@torch.no_grad()
def to_decode_layout(model: nn.Module) -> nn.Module:
    """Convert, in place, every float nn.Linear of a GPT (and a tied head + embedding) to the
    transposed (in, out) layout that decodes faster on CPU; returns the model in eval mode. The
    logits are the same up to float rounding. Not for training or saving."""
    config = getattr(model, "config", None)
    tied = bool(getattr(config, "tie_weights", False)) and isinstance(model.lm_head, nn.Linear)
    for name in linear_names(model):
        replace_module(model, name, TransposedLinear(model.get_submodule(name)))
    if tied:  # one (C, V) matrix for both: the head reads it whole, the lookup a column per token
        model.transformer["wte"] = TransposedEmbedding(model.lm_head)
    model.decode_layout = True
    return model.eval()


def torch_dynamic_int8(model: nn.Module) -> nn.Module:
    """torch's own dynamic int8 quantisation of every nn.Linear (int8 weights per tensor, int8
    activations quantised on the fly, fbgemm kernels): the reference to compare ours with. Returns
    a copy; the model is unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
