"""Prefix tuning (Li & Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation").

Every layer's attention gets P trainable key/value vectors in front of the real tokens' own; the
model stays frozen. The prefix is one (P, n_layer * 2 * C) table, read as layer i's keys (row
block 2i) and values (2i + 1), head by head: ``peft``'s layout, so its tables copy over as they are.

Optimising the table directly is unstable, the paper found, so it also trains it through a
reparameterisation: a small embedding (P, C) and an MLP (C -> hidden -> tanh -> n_layer * 2 * C);
after training only its output matters (``projection`` > 0 selects it).

Initialisation: without the MLP the prefix starts as the keys/values that P random vocabulary
tokens leave in the model (the paper's "real words" initialisation, better than random numbers,
whose scale the frozen layers never saw); with it, as ``peft`` does (N(0, 1) embedding, default
Linear layers). The positions of the real tokens start at P (gptlab.finetune.peft_virtual).
Prefix tuning cannot be merged into the weights: the prefix is extra attention input, not a change
of any weight matrix.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.finetune.peft_virtual import VirtualTokens, check_supported, install, record_keys_values


class Prefix(VirtualTokens):
    def __init__(self, gpt: nn.Module, count: int, projection: int = 0, seed: int = 0) -> None:
        super().__init__()
        cfg = gpt.config
        self.count, self.n_layer, self.n_head = count, cfg.n_layer, cfg.n_head
        width = cfg.n_layer * 2 * cfg.n_embd
        weight = next(gpt.parameters())
        factory = dict(device=weight.device, dtype=weight.dtype)
        if projection:
            self.embedding = nn.Embedding(count, cfg.n_embd, **factory)
            self.transform = nn.Sequential(
                nn.Linear(cfg.n_embd, projection, **factory),
                nn.Tanh(),
                nn.Linear(projection, width, **factory),
            )
        else:
            self.embedding = nn.Embedding(count, width, **factory)
            self.transform = None
            with torch.no_grad():
                self.embedding.weight.copy_(_real_word_prefix(gpt, count, seed))

    def table(self) -> torch.Tensor:
        """The prefix as (P, n_layer * 2 * C)."""
        x = self.embedding.weight
        return self.transform(x) if self.transform is not None else x

    def keys_values(self, gpt: nn.Module, batch_size: int):
        P, L, H = self.count, self.n_layer, self.n_head
        kv = self.table().view(P, 2 * L, H, -1).permute(1, 2, 0, 3)  # (2L, H, P, D)
        kv = kv[:, None].expand(-1, batch_size, -1, -1, -1)  # (2L, B, H, P, D)
        return [kv[2 * i] for i in range(L)], [kv[2 * i + 1] for i in range(L)]


@torch.no_grad()
def _real_word_prefix(gpt: nn.Module, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(gpt.config.vocab_size, (count,), generator=g).to(gpt.transformer.wte.weight.device)
    was_training = gpt.training
    gpt.eval()
    keys, values = record_keys_values(gpt, gpt.transformer.wte(ids))
    gpt.train(was_training)
    per_layer = [t for kv in zip(keys, values) for t in kv]  # k0, v0, k1, v1, ... (1, H, P, D) each
    return torch.cat(per_layer, dim=0).permute(2, 0, 1, 3).reshape(count, -1)  # (P, 2L * C)


def apply_prefix(gpt: nn.Module, tokens: int = 20, projection: int = 0, seed: int = 0) -> nn.Module:
    """Freeze ``gpt`` and give it a trainable prefix of ``tokens`` positions per layer (in place)."""
    check_supported(gpt, "prefix")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise GptlabError(f"prefix tuning needs a positive number of virtual tokens, got {tokens!r}")
    if isinstance(projection, bool) or not isinstance(projection, int) or projection < 0:
        raise GptlabError(f"prefix projection width must be >= 0 (0: no MLP), got {projection!r}")
    install(gpt, Prefix(gpt, tokens, projection, seed))
    return gpt


__all__ = ["Prefix", "apply_prefix"]
