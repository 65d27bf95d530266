"""A T5-style encoder-decoder (``model.arch = "encdec"``): the source is read bidirectionally,
the target written left to right with cross-attention to the source.

Layout of T5 v1.0 (Raffel et al., 2020), so a Hugging Face ``T5ForConditionalGeneration`` loads
unchanged (gptlab/model/hf_encdec.py): one token table shared by both stacks and (tied) the LM
head; ``n_layer`` pre-norm blocks in each stack (norm ``norm``: T5 uses rmsnorm, eps 1e-6);
attention without the 1/sqrt(D) scaling and with T5's *relative position bias* (one learned
scalar per head and distance bucket, ``rel_buckets`` buckets, logarithmic beyond half of them up
to ``rel_max_distance``; bidirectional in the encoder, causal in the decoder; computed once per
stack and added in every layer), so there is no position table and ``block_size`` only bounds
lengths; a ReLU MLP (``activation``); a final norm per stack; with tied weights the decoder's
output is scaled by C^-1/2 before the head (T5's convention). ``bias`` false for T5.

Teacher forcing: ``forward(dec_idx, targets, src=..., src_lengths=...)`` with ``dec_idx`` the
targets shifted right behind ``start_id`` (`shift_right`). Greedy decoding (`greedy`) runs the
encoder once, precomputes every layer's cross-attention keys and values, and keeps the decoder's
self-attention keys and values in a `Seq2SeqCache`: equal to re-running the whole decoder each
step (``use_cache=False``), which the tests check.

Calls made for a decoder-only GPT (no ``src``) are refused with a GptlabError.
Shapes: B batch, S source tokens, T target tokens, C = n_embd, H heads, D = C // H.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.encoder import NotADecoder, not_a_decoder, padding_mask
from gptlab.model.gpt import (
    INIT_STD,
    MLP_EXPANSION,
    lm_loss,
    make_norm,
)


def relative_bucket(
    distance: torch.Tensor, bidirectional: bool, buckets: int, max_distance: int
) -> torch.Tensor:
    """T5's bucket of each key-minus-query ``distance``: exact for small distances, logarithmic
    up to ``max_distance`` (everything beyond shares the last bucket). Bidirectional: half of the
    buckets for keys after the query. Causal: only keys at or before the query have buckets."""
    bucket = torch.zeros_like(distance)
    if bidirectional:
        buckets //= 2
        bucket = bucket + (distance > 0).long() * buckets
        distance = distance.abs()
    else:
        distance = (-distance).clamp(min=0)
    exact = buckets // 2
    far = (
        exact
        + (
            torch.log(distance.float().clamp(min=1) / exact)
            / math.log(max_distance / exact)
            * (buckets - exact)
        ).long()
    )
    far = far.clamp(max=buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class Attention(nn.Module):
    """Multi-head attention, T5's: separate q, k, v, o; no scaling; an additive bias (B|1, H, T, S)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C, self.n_head = config.n_embd, config.n_head
        self.q, self.k, self.v, self.o = (nn.Linear(C, C, bias=config.bias) for _ in range(4))
        self.dropout = config.site_dropout("attn")

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)

    def kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.k(x)), self.heads(self.v(x))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            self.heads(self.q(x)), k, v, attn_mask=bias, dropout_p=p, scale=1.0
        )
        return self.o(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)) [+ x + cross(norm(x), source)] + x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, cross: bool) -> None:
        super().__init__()
        C = config.n_embd
        self.ln_1, self.attn = make_norm(config), Attention(config)
        if cross:
            self.ln_x, self.cross = make_norm(config), Attention(config)
        self.ln_2 = make_norm(config)
        act = nn.ReLU() if config.activation == "relu" else nn.GELU(approximate="tanh")
        self.mlp = nn.Sequential(
            nn.Linear(C, MLP_EXPANSION * C, bias=config.bias),
            act,
            nn.Dropout(config.dropout),
            nn.Linear(MLP_EXPANSION * C, C, bias=config.bias),
        )
        self.drop = nn.Dropout(config.site_dropout("resid"))

    def forward(self, x, bias, self_kv=None, cross_kv=None, cross_bias=None):
        """``self_kv``: cached (k, v) of earlier positions to extend, or None; returns (x, (k, v))."""
        h = self.ln_1(x)
        k, v = self.attn.kv(h)
        if self_kv is not None:
            k, v = torch.cat((self_kv[0], k), dim=2), torch.cat((self_kv[1], v), dim=2)
        x = x + self.drop(self.attn(h, k, v, bias))
        if cross_kv is not None:
            x = x + self.drop(self.cross(self.ln_x(x), *cross_kv, cross_bias))
        return x + self.drop(self.mlp(self.ln_2(x))), (k, v)


class Seq2SeqCache:
    """What incremental decoding keeps: each decoder layer's self-attention (k, v) so far, the
    cross-attention (k, v) of the source (computed once), its padding bias, and the position."""

    def __init__(self, cross_kv: list, cross_bias: torch.Tensor) -> None:
        self.self_kv: list = [None] * len(cross_kv)
        self.cross_kv, self.cross_bias, self.pos = cross_kv, cross_bias, 0


class EncoderDecoder(NotADecoder, nn.Module):
    ARCHES = ("encdec",)

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.check_arch(config)
        self.config = config
        H = config.n_head
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=nn.Dropout(config.site_dropout("embd")),
                enc=nn.ModuleList(Block(config, cross=False) for _ in range(config.n_layer)),
                enc_rel=nn.Embedding(config.rel_buckets, H),
                enc_ln=make_norm(config),
                h=nn.ModuleList(Block(config, cross=True) for _ in range(config.n_layer)),
                dec_rel=nn.Embedding(config.rel_buckets, H),
                ln_f=make_norm(config),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.activation_checkpointing = False  # a GPT option the trainer sets; not read here
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=INIT_STD)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.config.tie_weights:
            n -= self.transformer.wte.weight.numel()
        return n

    def position_bias(self, decoder: bool, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(1, H, T, S) relative position bias of query positions (T,) over key positions (S,)."""
        cfg = self.config
        table = self.transformer.dec_rel if decoder else self.transformer.enc_rel
        buckets = relative_bucket(
            keys[None, :] - queries[:, None], not decoder, cfg.rel_buckets, cfg.rel_max_distance
        )
        return table(buckets).permute(2, 0, 1).unsqueeze(0)

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) right-padded to ``src_lengths`` -> (encoder output (B, S, C), the additive
        padding bias (B|1, 1, 1, S) cross-attention uses)."""
        B, S = src.shape
        if self.config.block_size < S:
            raise GptlabError(f"source of {S} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(S, device=src.device)
        keep = padding_mask(src_lengths, S, src.device)
        pad = (
            torch.zeros(1, 1, 1, S, device=src.device)
            if keep is None
            else (~keep).float() * torch.finfo(torch.float32).min
        )
        x = self.transformer.drop(self.transformer.wte(src))
        bias = self.position_bias(False, pos, pos) + pad
        for block in self.transformer.enc:
            x, _ = block(x, bias)
        return self.transformer.drop(self.transformer.enc_ln(x)), pad

    def decode(
        self, idx: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor, cache: Seq2SeqCache | None = None
    ) -> torch.Tensor:
        """Decoder inputs (B, T) after ``cache.pos`` earlier ones -> logits (B, T, V)."""
        T = idx.shape[1]
        start = 0 if cache is None else cache.pos
        if start + T > self.config.block_size:
            raise GptlabError(
                f"target of {start + T} tokens is longer than block_size {self.config.block_size}"
            )
        keys = torch.arange(start + T, device=idx.device)
        bias = self.position_bias(True, keys[start:], keys)  # causal buckets; the mask below hides the future
        bias = bias.masked_fill(keys[None, None, None, :] > keys[start:, None], torch.finfo(bias.dtype).min)
        x = self.transformer.drop(self.transformer.wte(idx))
        for i, block in enumerate(self.transformer.h):
            cross_kv = block.cross.kv(memory) if cache is None else cache.cross_kv[i]
            x, kv = block(x, bias, None if cache is None else cache.self_kv[i], cross_kv, pad)
            if cache is not None:
                cache.self_kv[i] = kv
        if cache is not None:
            cache.pos += T
        x = self.transformer.drop(self.transformer.ln_f(x))
        if self.config.tie_weights:
            x = x * self.config.n_embd**-0.5  # T5 rescales before a head tied to the embedding
        return self.lm_head(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache=None,
        last_only: bool = False,
        label_smoothing: float = 0.0,
        *,
        src: torch.Tensor | None = None,
        src_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: decoder inputs idx (B, T) given the source ``src`` (B, S) -> logits
        (B, T, V) and the cross-entropy against targets (B, T) (-100 ignored)."""
        if src is None or kv_cache is not None or last_only:
            raise not_a_decoder(
                self.config, "next-token prediction without a source (generation, perplexity)"
            )
        memory, pad = self.encode(src, src_lengths)
        logits = self.decode(idx, memory, pad)
        return logits, lm_loss(logits, targets, label_smoothing)

    @torch.no_grad()
    def greedy(
        self,
        src: torch.Tensor,
        max_new_tokens: int,
        src_lengths: torch.Tensor | None = None,
        eos_id: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Greedy decoding: (B, N) tokens after ``start_id``, N <= max_new_tokens; a row that has
        produced ``eos_id`` is padded with it from then on, and decoding stops when all have."""
        memory, pad = self.encode(src, src_lengths)
        B = src.shape[0]
        out = torch.full((B, 1), self.config.start_id, dtype=torch.long, device=src.device)
        cache = Seq2SeqCache([b.cross.kv(memory) for b in self.transformer.h], pad) if use_cache else None
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            logits = self.decode(out[:, -1:] if use_cache else out, memory, pad, cache)
            nxt = logits[:, -1].argmax(dim=-1)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done |= nxt == eos_id
            out = torch.cat((out, nxt[:, None]), dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return out[:, 1:]

    def head_input(self, idx, lengths=None):
        raise not_a_decoder(self.config, "a classifier head (use model.arch=encoder or gpt)")


def shift_right(targets: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher forcing's decoder inputs: ``start_id`` then targets (B, T) without their last
    token; ignored targets (-100) become ``start_id`` (they are padding after the end)."""
    shifted = torch.full_like(targets, start_id)
    shifted[:, 1:] = targets[:, :-1].clamp(min=0)
    shifted[:, 1:][targets[:, :-1] < 0] = start_id
    return shifted
