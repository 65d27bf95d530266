"""Decoding variants that bench/decode.py measures beside gptlab's defaults.

- the decode layouts (gptlab/model/decode_layout.py), re-exported here for the bench scripts:
  `to_decode_layout` (fp32: weights stored (in, out); bf16: oneDNN-packed), which `gptlab generate`
  now applies by default on CPU;
- torch's own dynamic int8 quantisation, the reference gptlab's weight-only int8 is compared
  with (`torch_dynamic_int8`).

Import from a bench script as ``from decode_layout import to_decode_layout`` (bench/ is on the path
of a script run as ``python bench/<name>.py``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from gptlab.model.decode_layout import PackedLinear, TransposedLinear, to_decode_layout

__all__ = ["PackedLinear", "TransposedLinear", "to_decode_layout", "torch_dynamic_int8"]


def torch_dynamic_int8(model: nn.Module) -> nn.Module:
    """torch's own dynamic int8 quantisation of every nn.Linear (int8 weights per tensor, int8
    activations quantised on the fly, fbgemm kernels): the reference to compare ours with. Returns
    a copy; the model is unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
