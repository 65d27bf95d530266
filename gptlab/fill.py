"""Fill-mask with an encoder (``gptlab fill``): the most likely tokens at each [MASK] of a text.

The text is split at the literal ``[MASK]``; the pieces are tokenized on their own and joined
with the model's ``mask_id`` between them (a trained encoder reserves that id after its
tokenizer's: gptlab/train/mlm.py), so the tokenizer never has to know the marker. The encoder
reads the whole text at once; each masked position gets its top-k tokens with probabilities.
"""

from __future__ import annotations

from typing import Any

import torch

from gptlab.errors import GptlabError

MASK = "[MASK]"


def mask_ids(text: str, tokenizer, mask_id: int) -> list[int]:
    """Token ids of ``text`` with ``mask_id`` at each ``[MASK]``."""
    pieces = text.split(MASK)
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if i:
            ids.append(mask_id)
        if piece:
            ids.extend(tokenizer.encode(piece))
    return ids


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, k: int = 5) -> list[dict[str, Any]]:
    """One entry per [MASK] of ``text`` in order: ``{"position", "fills": [{"token", "id",
    "probability"}, ... k]}``; the top fill also replaces the mask in ``"filled"``."""
    cfg = model.config
    if cfg.arch != "encoder" or cfg.mask_id is None:
        raise GptlabError(
            f"fill-mask needs an encoder with a [MASK] token (model.arch=encoder, trained with "
            f"train.objective=mlm); this model is model.arch={cfg.arch!r}"
        )
    if MASK not in text:
        raise GptlabError(f"the text has no {MASK} to fill: {text!r}")
    if not 1 <= k <= cfg.vocab_size:
        raise GptlabError(f"--top-k must be in 1..{cfg.vocab_size}, got {k}")
    ids = mask_ids(text, tokenizer, cfg.mask_id)
    if len(ids) > cfg.block_size:
        raise GptlabError(
            f"the text is {len(ids)} tokens, longer than the model's context ({cfg.block_size})"
        )
    device = next(model.parameters()).device
    idx = torch.tensor([ids], device=device)
    logits, _ = model(idx, mlm=True)
    logits[..., cfg.mask_id] = float("-inf")  # [MASK] is never an answer
    logits[..., tokenizer.vocab_size :] = float("-inf")  # nor an id the tokenizer cannot decode
    probs = logits[0].float().softmax(dim=-1)
    out, filled = [], list(ids)
    for pos in [i for i, t in enumerate(ids) if t == cfg.mask_id]:
        p, top = probs[pos].topk(k)
        fills = [
            {"token": tokenizer.decode([t]), "id": t, "probability": round(float(q), 6)}
            for t, q in zip(top.tolist(), p.tolist())
        ]
        filled[pos] = top[0].item()
        out.append({"position": pos, "fills": fills})
    text_out = "".join(tokenizer.decode([t]) for t in filled)
    return [dict(entry, filled=text_out) for entry in out]
