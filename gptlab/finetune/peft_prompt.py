"""Prompt tuning (Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning").

P trainable input embeddings (a "soft prompt") go in front of every text; the model, embeddings
included, stays frozen. Only P * C numbers train: the smallest of the family.

The soft prompt is computed by the frozen model like any input (at positions 0..P-1, the real
tokens following at P..); by causality its keys and values do not depend on the text, so they are
computed once per call and the real tokens attend to them through the KV-cache path
(gptlab.finetune.peft_virtual): the same outputs as feeding the concatenation, as ``peft`` does.

Initialisation: the embeddings of P random vocabulary tokens (the paper's sampled-vocabulary
initialisation; random vectors of another scale train worse). It cannot be merged into the weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.finetune.peft_virtual import VirtualTokens, check_supported, install, record_keys_values


class SoftPrompt(VirtualTokens):
    def __init__(self, gpt: nn.Module, count: int, seed: int = 0) -> None:
        super().__init__()
        self.count = count
        wte = gpt.transformer.wte.weight
        ids = torch.randint(gpt.config.vocab_size, (count,), generator=torch.Generator().manual_seed(seed))
        self.embedding = nn.Embedding(count, gpt.config.n_embd, device=wte.device, dtype=wte.dtype)
        with torch.no_grad():
            self.embedding.weight.copy_(wte[ids.to(wte.device)])

    def keys_values(self, gpt: nn.Module, batch_size: int):
        keys, values = record_keys_values(gpt, self.embedding.weight)  # (1, H, P, D) per layer
        grow = lambda t: t.expand(batch_size, -1, -1, -1)  # noqa: E731
        return [grow(k) for k in keys], [grow(v) for v in values]


def apply_prompt(gpt: nn.Module, tokens: int = 20, seed: int = 0) -> nn.Module:
    """Freeze ``gpt`` and put ``tokens`` trainable soft-prompt embeddings before every input (in place)."""
    check_supported(gpt, "prompt")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise GptlabError(f"prompt tuning needs a positive number of virtual tokens, got {tokens!r}")
    install(gpt, SoftPrompt(gpt, tokens, seed))
    return gpt


__all__ = ["SoftPrompt", "apply_prompt"]
