"""A BERT-style encoder (``model.arch = "encoder"``): bidirectional attention, masked-LM head.

Layout of BERT (Devlin et al., 2019), so Hugging Face ``BertForMaskedLM`` weights load unchanged
(gptlab/model/hf_encdec.py): token + learned position (+ optional token-type, ``type_vocab_size``)
embeddings, a LayerNorm and dropout; ``n_layer`` post-norm blocks, ``norm(x + attn(x))`` then
``norm(x + mlp(x))``, with attention over every position (no causal mask; padding masked out by
``lengths``); the MLM head is BERT's transform (Linear, GELU, LayerNorm) and a decoder tied to the
token table, with its own bias. GELU is the exact (erf) one, as BERT's; ``activation`` "relu"
replaces it. ``norm_position``, ``pos_encoding``, ``attention`` and ``mlp`` are not read.

The [MASK] token is ``mask_id``, a config field: a model trained by gptlab (``train.objective =
mlm``, gptlab/train/mlm.py) reserves one id after the tokenizer's vocabulary (vocab_size = the
tokenizer's + 1), so no tokenizer changes; an imported BERT uses its own ([MASK] = 103).

It is not a language model: ``forward`` without ``mlm=True`` (what generation, perplexity and the
decoder analyses call) is refused with a GptlabError naming the model, so nothing silently reads
next-token logits from a model that sees the future.

Shapes: B batch, T tokens, C = n_embd, H heads, D = C // H, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import INIT_STD, MLP_EXPANSION, lm_loss
from gptlab.model.variant import ArchVariant


def not_a_decoder(config: GPTConfig, what: str) -> GptlabError:
    """The error for a verb or analysis that needs a decoder-only GPT (next-token logits)."""
    kind = {"encoder": "an encoder (BERT-style, bidirectional)", "encdec": "an encoder-decoder (T5-style)"}
    return GptlabError(
        f"{what} needs a decoder-only language model; this model is {kind.get(config.arch, config.arch)} "
        f"(model.arch = {config.arch!r}): use `gptlab fill` for an encoder, EncoderDecoder.greedy for an encoder-decoder"
    )


def padding_mask(lengths: torch.Tensor | None, T: int, device) -> torch.Tensor | None:
    """(B, 1, 1, T) True at real tokens (the first ``lengths`` of each row), or None: no padding."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device)
    return (torch.arange(T, device=device)[None, :] < lengths[:, None])[:, None, None, :]


class NotADecoder(ArchVariant):
    """What the encoder and the encoder-decoder share: saving and loading as a GPT does
    (`ArchVariant`), and refusing the decoder-only analyses (attention maps of a causal model, the
    logit lens)."""

    def forward_with_attention(self, idx: torch.Tensor):
        raise not_a_decoder(self.config, "attention analysis")

    def hidden_states(self, idx: torch.Tensor, kv_cache=None):
        raise not_a_decoder(self.config, "the logit lens (hidden states read by the LM head)")

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        raise not_a_decoder(self.config, "unembedding a residual stream into next-token logits")


class BidirectionalAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.site_dropout("attn")
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


def activation(config: GPTConfig) -> nn.Module:
    return nn.GELU() if config.activation == "gelu" else nn.ReLU()  # exact GELU: BERT's


class EncoderBlock(nn.Module):
    """Post-norm (BERT): norm(x + attn(x)), then norm(x + mlp(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.attn = BidirectionalAttention(config)
        self.ln_1 = nn.LayerNorm(C, eps=config.norm_eps, bias=config.bias)
        self.mlp = nn.Sequential(
            nn.Linear(C, MLP_EXPANSION * C, bias=config.bias),
            activation(config),
            nn.Linear(MLP_EXPANSION * C, C, bias=config.bias),
        )
        self.ln_2 = nn.LayerNorm(C, eps=config.norm_eps, bias=config.bias)
        self.drop = nn.Dropout(config.site_dropout("resid"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_1(x + self.drop(self.attn(x, mask)))
        return self.ln_2(x + self.drop(self.mlp(x)))


class Encoder(NotADecoder, nn.Module):
    ARCHES = ("encoder",)

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.check_arch(config)
        self.config = config
        C = config.n_embd
        parts = dict(
            wte=nn.Embedding(config.vocab_size, C),
            wpe=nn.Embedding(config.block_size, C),
            ln_e=nn.LayerNorm(C, eps=config.norm_eps, bias=config.bias),
            drop=nn.Dropout(config.site_dropout("embd")),
            h=nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layer)),
        )
        if config.type_vocab_size:
            parts["wtt"] = nn.Embedding(config.type_vocab_size, C)
        self.transformer = nn.ModuleDict(parts)
        self.mlm_transform = nn.Sequential(
            nn.Linear(C, C, bias=config.bias), activation(config), nn.LayerNorm(C, eps=config.norm_eps)
        )
        self.lm_head = nn.Linear(C, config.vocab_size, bias=True)  # BERT's decoder has a bias
        self.activation_checkpointing = False  # a GPT option the trainer sets; not read here
        self.apply(_init_weights)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(m.weight.numel() for k, m in self.transformer.items() if k in ("wte", "wpe", "wtt"))
            if self.config.tie_weights:
                n += self.lm_head.weight.numel()
        return n

    def encode(
        self,
        idx: torch.Tensor,
        lengths: torch.Tensor | None = None,
        token_types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """idx (B, T), right-padded to ``lengths`` (B,) if given -> the last block's output (B, T, C)."""
        B, T = idx.shape
        if self.config.block_size < T:
            raise GptlabError(
                f"sequence of {T} tokens is longer than the context (block_size {self.config.block_size})"
            )
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T, device=idx.device))
        if "wtt" in self.transformer:
            types = torch.zeros_like(idx) if token_types is None else token_types
            x = x + self.transformer.wtt(types)
        x = self.transformer.drop(self.transformer.ln_e(x))
        mask = padding_mask(lengths, T, idx.device)
        for block in self.transformer.h:
            x = block(x, mask)
        return x

    def mlm_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The MLM head: hidden states (B, T, C) -> vocabulary logits (B, T, V)."""
        return self.lm_head(self.mlm_transform(x))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache=None,
        last_only: bool = False,
        label_smoothing: float = 0.0,
        *,
        mlm: bool = False,
        lengths: torch.Tensor | None = None,
        token_types: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """With ``mlm=True``: logits (B, T, V) at every position and the cross-entropy against
        ``targets`` (B, T), the original tokens at masked positions and -100 elsewhere. Without
        it the call is a decoder's (next-token logits) and is refused (module docstring)."""
        if not mlm or kv_cache is not None or last_only:
            raise not_a_decoder(self.config, "next-token prediction (generation, perplexity, scoring)")
        logits = self.mlm_logits(self.encode(idx, lengths, token_types))
        return logits, lm_loss(logits, targets, label_smoothing)

    def head_input(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """What a classifier head reads (gptlab.model.heads): the last block's output (B, T, C),
        padding masked out of attention by ``lengths``."""
        return self.encode(idx, lengths)


def _init_weights(module: nn.Module) -> None:
    """BERT's initialisation: normal(0, 0.02) matrices and tables, zero biases, unit norms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
