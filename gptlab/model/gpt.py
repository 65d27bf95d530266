"""The GPT: token + position embeddings, a stack of transformer blocks, a language-model head.

Reads top to bottom like GPT-2 (Radford et al., 2019) and nanoGPT: attention, MLP, block, GPT.
Module names follow GPT-2's (``transformer.h.0.attn.c_attn``, ...) so importing its weights is a
matter of transposing a few matrices (gptlab/model/hf.py). The few architecture options
(positions, activation, norm, bias, weight tying) are fields of `GPTConfig`, not model families.

The variants of the block, also config fields: ``norm_position`` ``post`` puts the norm after each
residual addition (the original transformer); such a model still ends with ``ln_f`` before the
LM head, so every variant has the same final norm and tensor names (the logit lens, classifier
heads and LoRA read ``ln_f``); after the last block's norm it is a second, learned rescaling.
``attention`` ``local`` masks attention to a sliding window (also in the KV cache); ``mlp``
``moe`` replaces the MLP by a mixture of experts (gptlab/model/moe.py).

Shapes in comments: B batch, T tokens, C = n_embd channels, H heads, D = C // H head size,
V vocabulary, S = the keys a query can see (T, or cached + new tokens with a KV cache).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.kv_cache import KVCache, causal_mask
from gptlab.model.moe import MixtureOfExperts

MLP_EXPANSION = 4  # the MLP's hidden width is 4 * n_embd, as in GPT-2
INIT_STD = 0.02  # GPT-2's initializer range
SINUSOID_BASE = 10000.0  # wavelength scale of the fixed sinusoidal encoding ("Attention is all you need")
IGNORE_INDEX = -100  # targets equal to this do not count in the loss (padding, prompt tokens)
BLOCK_TENSOR = re.compile(r"transformer\.h\.(\d+)\.")  # the tensors of block i


def check_tensor_names(expected, state, context: str) -> None:
    """GptlabError ``"{context}: missing tensor 'a'; unexpected tensor 'b'"`` (up to 3 of each)
    unless ``state`` has exactly the names of ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        problems = [f"missing tensor {k!r}" for k in missing[:3]] + [
            f"unexpected tensor {k!r}" for k in unexpected[:3]
        ]
        raise GptlabError(f"{context}: {'; '.join(problems)}")


def check_config_matches_shapes(
    config: GPTConfig,
    shapes: Mapping[str, tuple[int, ...]],
    source: str,
    config_source: str = "the model config",
) -> None:
    """Compare the config's sizes with tensor shapes, float or quantised (e.g. read from a weights
    file's header), before a model is built: a config saying n_layer = 10^9 for a 4-block file
    is refused here, naming the field, instead of building 10^9 blocks (even on the meta device
    that takes forever). n_head appears in no shape: `GPTConfig.validate` bounds it."""
    blocks = {int(m.group(1)) for name in shapes if (m := BLOCK_TENSOR.match(name))}
    n_blocks = max(blocks) + 1 if blocks else 0
    if n_blocks != len(blocks):
        first_gap = min(set(range(n_blocks)) - blocks)
        raise GptlabError(
            f"{source}: block {first_gap} has no tensors (the file holds blocks up to {n_blocks - 1})"
        )
    if config.n_layer != n_blocks:
        raise GptlabError(
            f"{config_source} says n_layer={config.n_layer} but {source} holds {n_blocks} blocks"
        )

    def mismatch(field: str, name: str, found: int) -> GptlabError:
        return GptlabError(
            f"{config_source} says {field}={getattr(config, field)} but {source} holds {field}={found} "
            f"(tensor {name!r} has shape {shapes[name]})"
        )

    ln_f = shapes.get("transformer.ln_f.weight", ())  # (n_embd,): never quantised
    if len(ln_f) == 1 and ln_f[0] != config.n_embd:
        raise mismatch("n_embd", "transformer.ln_f.weight", ln_f[0])
    for name in ("transformer.wte.weight", "transformer.wte.qweight"):  # (vocab_size, ...)
        if shapes.get(name) and shapes[name][0] != config.vocab_size:
            raise mismatch("vocab_size", name, shapes[name][0])
    wpe = shapes.get("transformer.wpe.weight")
    if config.pos_encoding == "learned" and wpe and wpe[0] != config.block_size:
        raise mismatch("block_size", "transformer.wpe.weight", wpe[0])


def check_tensor_shapes(
    expected: Mapping[str, tuple[int, ...]], shapes: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """Exactly the expected tensor names, each with its expected shape, or a GptlabError naming
    ``source``, the tensor and both shapes."""
    check_tensor_names(expected, shapes, f"{source} does not match the model config")
    for name, shape in expected.items():
        if tuple(shapes[name]) != tuple(shape):
            raise GptlabError(
                f"{source}: tensor {name!r} has shape {tuple(shapes[name])}, expected {tuple(shape)}"
            )


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centering and without bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def sinusoidal_encoding(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed encoding of positions (...,) -> (..., dim): sin/cos pairs at geometric frequencies."""
    freqs = SINUSOID_BASE ** (-torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32) / dim)
    angles = pos.float()[..., None] * freqs  # (..., ceil(dim/2))
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)[..., :dim]


def rope_angles(pos: torch.Tensor, head_size: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotary factors for positions (...,), each (..., 1, D) and broadcast over heads:
    (cos, cos) and (-sin, sin) over the two halves of the head, computed once per forward for
    every layer, so that `apply_rope` is three element-wise ops and a copy."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, device=pos.device, dtype=torch.float32) / head_size)
    angles = pos.float()[..., None] * inv_freq  # (..., D/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1).unsqueeze(-3), torch.cat((-sin, sin), dim=-1).unsqueeze(-3)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x1, x2) channel pair of x (B, H, T, D) by its position's angle (RoPE):
    (x1 cos - x2 sin, x1 sin + x2 cos), written as x * cos + (x2, x1) * (-sin, sin)."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, T, D/2) each
    rotated = x.float() * cos + torch.cat((x2, x1), dim=-1) * signed_sin
    return rotated.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.window = config.window if config.attention == "local" else None  # None: full causal attention
        self.dropout = config.site_dropout("attn")  # on the attention probabilities (SDPA's dropout_p)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(self.dropout)
        self.resid_dropout = nn.Dropout(config.site_dropout("resid"))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the attention output (B, T, C) and, if need_weights, the weights (B, H, T, S)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        H = self.n_head
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D) each
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        mask = None  # None: plain causal over these T tokens
        if kv_cache is not None:
            if kv_cache.window != self.window:  # a full cache would let a local model see too far
                raise GptlabError(
                    f"the KV cache's window ({kv_cache.window}) is not the model's ({self.window}): "
                    "build it with KVCache.for_model"
                )
            mask = kv_cache.attention_mask(T)  # (B, 1, T, S)
            k, v = kv_cache.update(layer, k, v)  # (B, H, S, D)
        elif self.window is not None and self.window < T:  # banded: query i sees keys i-window+1..i
            pos = torch.arange(T, device=x.device)
            mask = causal_mask(pos[:, None], pos[None, :], self.window)  # (T, T)

        if need_weights:  # the explicit computation, for analysis: softmax(q k^T / sqrt(D)) v
            if mask is None:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, H, T, S)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = self.attn_dropout(att) @ v  # (B, H, T, D)
        else:  # the fused kernel (flash / memory-efficient attention where available)
            att = None
            dropout_p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y)), att


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = MLP_EXPANSION * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        # GPT-2 uses the tanh approximation of GELU; using it here keeps logits equal to GPT-2's
        self.act = nn.GELU(approximate="tanh") if config.activation == "gelu" else nn.ReLU()
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.site_dropout("resid"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Transformer block. Pre-norm (GPT-2): x + attn(norm(x)), then x + mlp(norm(x)); the residual
    stream itself is never normalised, which keeps deep stacks trainable without warm-up.
    Post-norm (Vaswani et al., 2017): norm(x + attn(x)), then norm(x + mlp(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.post_norm = config.norm_position == "post"
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MixtureOfExperts(config, MLP) if config.mlp == "moe" else MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.post_norm:
            a, att = self.attn(x, rope, kv_cache, layer, need_weights)
            x = self.ln_1(x + a)
            return self.ln_2(x + self.mlp(x)), att
        a, att = self.attn(self.ln_1(x), rope, kv_cache, layer, need_weights)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, att


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=nn.Dropout(config.site_dropout("embd")),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=make_norm(config),
            )
        )
        if config.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # set by the trainer (train.activation_checkpointing): in training, keep only each block's
        # input and recompute its activations during backward, trading compute for memory
        self.activation_checkpointing = False
        if config.tie_weights:  # one matrix maps tokens to vectors and vectors back to token scores
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer), since every block adds two
        # of them to the residual stream and its variance would otherwise grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (a tied matrix counts once). non_embedding: without the token and
        position tables (the N of scaling laws); an untied LM head still counts."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if self.config.tie_weights:  # the head is the token table: it is a matmul, count it back
                n += self.lm_head.weight.numel()
        return n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, V) and the mean cross-entropy against targets (B, T)
        (entries equal to -100 ignored), or None without targets. ``label_smoothing`` eps: the
        targets are (1 - eps) one-hot + eps uniform over the vocabulary, F.cross_entropy's
        definition; trainers pass it for the training loss only, so evaluations stay the NLL. With a KV cache, idx holds only
        the new tokens; they are appended at ``kv_cache.pos``. ``last_only``: logits of the last
        position only, (B, 1, V): all that sampling needs, and the LM head is the largest matmul
        (on a 512-token GPT-2 prompt, all positions would cost as much as the rest of the model)."""
        if last_only and targets is not None:
            raise GptlabError("last_only gives the last position's logits: it cannot compute a loss")
        x, _, _ = self._run(idx, kv_cache)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        logits = self.unembed(x)  # (B, T, V)
        return logits, lm_loss(logits, targets, label_smoothing)

    def forward_with_attention(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, T, V) and every layer's attention weights, a list of n_layer (B, H, T, T)."""
        x, _, attns = self._run(idx, need_weights=True)
        return self.unembed(x), attns

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> list[torch.Tensor]:
        """The residual stream (B, T, C) after the embeddings and after each block (n_layer + 1
        tensors, before the final norm); ``unembed`` turns any of them into logits (logit lens).
        With a KV cache, as in ``forward``: idx holds the new tokens only."""
        _, hidden, _ = self._run(idx, kv_cache, keep_hidden=True)
        return hidden

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: residual stream (B, T, C) -> logits (B, T, V)."""
        return self.lm_head(self.transformer.ln_f(x))

    def head_input(self, idx: torch.Tensor) -> torch.Tensor:
        """What the LM head reads at every position: idx (B, T) -> the final-normed residual
        stream (B, T, C) (a classifier head reads it too: gptlab.model.heads)."""
        x, _, _ = self._run(idx)
        return self.transformer.ln_f(x)

    def _run(self, idx, kv_cache=None, need_weights=False, keep_hidden=False):
        B, T = idx.shape
        if kv_cache is not None:
            pos = kv_cache.positions(T)  # (B, T): per-row positions after the cached tokens
        elif self.config.block_size < T:
            raise GptlabError(
                f"sequence of {T} tokens is longer than the context (block_size {self.config.block_size})"
            )
        else:
            pos = torch.arange(T, device=idx.device)  # (T,)

        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.config.pos_encoding == "learned":
            x = x + self.transformer.wpe(pos)
        elif self.config.pos_encoding == "sinusoidal":
            x = x + sinusoidal_encoding(pos, self.config.n_embd).to(x.dtype)
        else:
            rope = rope_angles(pos, self.config.head_size, self.config.rope_base)
        x = self.transformer.drop(x)

        hidden, attns = [x] if keep_hidden else [], []
        recompute = self.activation_checkpointing and self.training and kv_cache is None and not need_weights
        for layer, block in enumerate(self.transformer.h):
            if recompute:  # non-reentrant: works with DDP/FSDP, replays dropout's RNG exactly
                x, att = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x, att = block(x, rope, kv_cache, layer, need_weights)
            if keep_hidden:
                hidden.append(x)
            if need_weights:
                attns.append(att)
        if kv_cache is not None:
            kv_cache.advance(T)
        return x, hidden, attns

    @classmethod
    def tensor_shapes(cls, config: GPTConfig) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the tensors a saved model holds (no ``lm_head.weight`` when tied),
        from a model on the meta device: nothing allocated."""
        return saved_tensor_shapes(cls, config)

    @classmethod
    def from_state_dict(
        cls, config: GPTConfig, state: dict[str, torch.Tensor], source: str = "weights"
    ) -> GPT:
        """Build a model from saved tensors without a random init first. Missing, unexpected or
        wrongly shaped tensors give a GptlabError naming ``source``, the tensor and both shapes.
        With tied weights the state needs only ``transformer.wte.weight``."""
        if config.tie_weights:
            state = {k: v for k, v in state.items() if k != "lm_head.weight"}
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        check_config_matches_shapes(config, shapes, source)  # first: before the config builds anything
        return build_from_state(cls, config, state, source)


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor | None, label_smoothing: float = 0.0
) -> torch.Tensor | None:
    """The mean cross-entropy of logits (B, T, V) against targets (B, T), entries equal to -100
    ignored; None without targets."""
    if targets is None:
        return None
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing
    )


def saved_tensor_shapes(cls: type[nn.Module], config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the tensors a saved ``cls(config)`` holds (no ``lm_head.weight`` when
    tied), from a model on the meta device."""
    with torch.device("meta"):
        model = cls(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_weights:
        shapes.pop("lm_head.weight")
    return shapes


def build_from_state(cls, config: GPTConfig, state: dict[str, torch.Tensor], source: str):
    """``cls(config)`` holding ``state`` (a tied head already dropped from it), built on the meta
    device without a random init: exactly the expected names and shapes, floating point, one dtype."""
    expected = cls.tensor_shapes(config)
    check_tensor_shapes(expected, {k: tuple(v.shape) for k, v in state.items()}, source)
    for name in expected:
        if not state[name].is_floating_point():
            raise GptlabError(
                f"{source}: tensor {name!r} has dtype {state[name].dtype}, expected a floating-point type"
            )
    # one dtype for the whole model (a file mixing float16 and float32 would fail in the first matmul)
    dtypes = {state[name].dtype for name in expected}
    if len(dtypes) > 1:
        common = functools.reduce(torch.promote_types, sorted(dtypes, key=str))
        state = {k: v.to(common) if k in expected else v for k, v in state.items()}
    with torch.device("meta"):  # shapes only: no memory, no init
        model = cls(config)
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_weights:  # assign=True replaced wte's Parameter: point the head at it again
        model.lm_head.weight = model.transformer.wte.weight
    return model
