"""Virtual tokens: keys and values every forward pass of a GPT starts from (prefix and prompt tuning).

Prefix tuning learns them directly (per layer); prompt tuning learns input embeddings and lets the
frozen model compute them. Either way the real tokens then attend to P virtual positions before
their own, which is exactly what a KV cache holding P tokens does: the real tokens sit at positions
P..P+T-1 (as in ``peft``, which offsets GPT-2's position ids by P) and see every virtual token.

So the machinery is the model's own KV cache path: `VirtualTokenCache` is a `KVCache` that starts
at ``pos = P`` and concatenates (instead of writing into a preallocated buffer) so that gradients
flow back into the virtual keys/values, and `install` makes the GPT start every cache-less call
(``forward``, ``hidden_states``) from one. A call that brings its own KV cache (generation) gets
the virtual tokens written into it first. Nothing of ``gptlab.model`` changes.

Limits, each a GptlabError: the model must be a transformer (``arch`` gpt) with full attention
(a sliding-window cache would evict the virtual tokens); P + T must fit the context; and a
generation cache with left padding is refused (its first slots are padding, not room for P tokens).
"""

from __future__ import annotations

import types

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.model.kv_cache import KVCache


class VirtualTokenCache(KVCache):
    """A KV cache whose first P slots of every layer are ``keys[layer]`` / ``values[layer]``
    (B, H, P, D), or, given none, one that records what the model stores (the prompt pass)."""

    def __init__(self, gpt: nn.Module, batch_size: int, keys=None, values=None) -> None:
        cfg = gpt.config
        param = next(gpt.parameters())
        # n_layer 0: the parent's buffers are empty; the keys live in the lists below
        super().__init__(
            0, batch_size, cfg.n_head, cfg.head_size, cfg.block_size, None, param.device, param.dtype
        )
        self.keys, self.values = list(keys or []), list(values or [])
        self.pos = self.keys[0].size(2) if self.keys else 0

    @property
    def filled(self) -> int:
        return self.pos

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer < len(self.keys):  # the virtual tokens first, then the new ones: (B, H, P+T, D)
            return torch.cat((self.keys[layer], k), dim=2), torch.cat((self.values[layer], v), dim=2)
        self.keys.append(k)  # recording: these are the virtual tokens of a later pass
        self.values.append(v)
        return k, v


class VirtualTokens(nn.Module):
    """What a method provides: ``count`` virtual tokens and their keys/values for a batch."""

    count: int

    def keys_values(self, gpt: nn.Module, batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer, keys and values (batch_size, H, P, D)."""
        raise NotImplementedError


def check_supported(gpt: nn.Module, method: str) -> None:
    cfg = gpt.config
    if getattr(cfg, "arch", "gpt") != "gpt":
        raise GptlabError(f"{method} tuning needs a transformer (model.arch gpt), not {cfg.arch}")
    if cfg.attention == "local":
        raise GptlabError(
            f"{method} tuning needs full attention: a sliding window would drop the virtual tokens"
        )
    if getattr(gpt, "virtual_tokens", None) is not None:
        raise GptlabError(
            "the model already has virtual tokens (prefix or prompt tuning); apply one method once"
        )


def install(gpt: nn.Module, tokens: VirtualTokens) -> None:
    """Freeze ``gpt`` and make every call start from ``tokens`` (registered as ``gpt.virtual_tokens``)."""
    if tokens.count >= gpt.config.block_size:
        raise GptlabError(
            f"{tokens.count} virtual tokens leave no room in the context (block_size {gpt.config.block_size})"
        )
    for p in gpt.parameters():
        p.requires_grad_(False)
    gpt.virtual_tokens = tokens
    # an instance method, not a closure: copy.deepcopy then rebinds it to the copy
    gpt._run = types.MethodType(_run_after_virtual_tokens, gpt)


def virtual_token_count(gpt: nn.Module) -> int:
    tokens = getattr(gpt, "virtual_tokens", None)
    return tokens.count if tokens is not None else 0


def _run_after_virtual_tokens(self, idx, kv_cache=None, need_weights=False, keep_hidden=False):
    tokens: VirtualTokens = self.virtual_tokens
    B, T = idx.shape
    if kv_cache is None:
        if tokens.count + T > self.config.block_size:
            raise GptlabError(
                f"{T} tokens after {tokens.count} virtual tokens exceed the context "
                f"(block_size {self.config.block_size}): give at most {self.config.block_size - tokens.count}"
            )
        keys, values = tokens.keys_values(self, B)
        kv_cache = VirtualTokenCache(self, B, keys, values)
    elif kv_cache.pos == 0:  # a generation starts: the virtual tokens go into its cache first
        if tokens.count + T > kv_cache.max_len:
            raise GptlabError(
                f"a prompt of {T} tokens after {tokens.count} virtual tokens does not fit the context "
                f"({kv_cache.max_len}): give at most {kv_cache.max_len - tokens.count} tokens, new ones included"
            )
        if kv_cache.padded:
            raise GptlabError(
                "prefix/prompt tuning cannot generate with a left-padded batch: generate one prompt at a time"
            )
        keys, values = tokens.keys_values(self, B)
        for layer, (k, v) in enumerate(zip(keys, values)):
            kv_cache.update(layer, k, v)
        kv_cache.advance(tokens.count)
    return type(self)._run(self, idx, kv_cache, need_weights, keep_hidden)


def record_keys_values(
    gpt: nn.Module, embeddings: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Run input ``embeddings`` (P, C) through the model in place of token embeddings, at positions
    0..P-1, and return every layer's keys and values (1, H, P, D): what those tokens leave in a cache."""
    recorder = VirtualTokenCache(gpt, 1)
    hook = gpt.transformer.wte.register_forward_hook(lambda module, inputs, output: embeddings[None])
    try:
        dummy = torch.zeros(1, embeddings.size(0), dtype=torch.long, device=embeddings.device)
        type(gpt)._run(gpt, dummy, recorder)  # the class's own _run: no virtual tokens before these
    finally:
        hook.remove()
    return recorder.keys, recorder.values


__all__ = [
    "VirtualTokenCache",
    "VirtualTokens",
    "check_supported",
    "install",
    "record_keys_values",
    "virtual_token_count",
]
