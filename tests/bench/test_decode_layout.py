"""bench/decode_layout.py: torch's dynamic int8 (the reference bench/decode.py compares gptlab's
int8 with) is close to fp32, gptlab's int8 at least as close. (The decode layouts it re-exports
are tested in tests/model/test_decode_layout.py.)"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import torch

from gptlab.model import GPT, GPTConfig
from gptlab.model.quantize import quantize_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
try:
    from decode_layout import torch_dynamic_int8
finally:
    sys.path.pop(0)


def make_model(vocab_size: int, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0)
    return GPT(GPTConfig(**{**cfg, **overrides})).eval()


def test_torch_dynamic_int8_reference_gives_close_logits():
    model = make_model(64)
    idx = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = model(idx)[0]
        ours = quantize_model(copy.deepcopy(model), 8)(idx)[0]
        theirs = torch_dynamic_int8(model)(idx)[0]
    scale = float(ref.abs().max())
    assert float((ours - ref).abs().max()) < 0.05 * scale
    assert float((theirs - ref).abs().max()) < 0.05 * scale
    # weight-only int8 (float activations) is at least as close to fp32 as int8 weights + activations
    assert float((ours - ref).abs().mean()) <= float((theirs - ref).abs().mean()) * 1.5
