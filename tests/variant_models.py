"""The architecture variants the variant tests run through (tests/model/test_variants.py,
tests/model/test_variants_everywhere.py): issue 18's block variants of the GPT and the recurrent
baseline, as small random models."""

from __future__ import annotations

import torch

from gptlab.model import GPTConfig, build_model

VARIANTS = {  # GPTConfig fields of the transformer's block variants
    "post-norm": dict(norm_position="post"),
    "local": dict(attention="local", window=5),
    "local-rope": dict(attention="local", window=3, pos_encoding="rope"),
    "moe": dict(mlp="moe", n_experts=4, top_k=2),
}
RECURRENT = {"lstm": dict(arch="lstm"), "gru": dict(arch="gru")}
EVERY = VARIANTS | RECURRENT


def small(seed: int = 0, std: float | None = 0.1, **fields):
    """A small model (a GPT, or an LSTM / GRU with ``arch``) in eval mode. ``std``: every weight
    drawn from N(0, std^2), so the logits are far from uniform and greedy decoding does not fall
    into a one-token loop at once."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=65, block_size=24, n_layer=2, n_head=2, n_embd=16, **fields)
    model = build_model(config).eval()
    if std is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, std)
    return model
