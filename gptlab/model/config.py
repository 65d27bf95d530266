"""`GPTConfig`: the architecture of a GPT, as a typed dataclass that round-trips through JSON.

The defaults are GPT-2 small (124M). The options are a few explicit fields, each with one meaning:

- ``dropout``: the probability used at the three classic sites (token+position embeddings,
  attention probabilities, residual branches), as nanoGPT does. 0.0 for pretraining small models
  on lots of data; 0.1 is GPT-2's value. Converted Hugging Face models get 0.0 (inference).
  ``embd_dropout``, ``attn_dropout``, ``resid_dropout`` set one site each (GPT-2's embd_pdrop,
  attn_pdrop, resid_pdrop); None (the default) means ``dropout``, so a config or model file
  written before they existed builds the same model. Resid covers the outputs of the attention
  and MLP projections, before they are added to the residual stream.
- ``bias``: biases in every Linear and LayerNorm (GPT-2: on). The LM head never has one.
- ``tie_weights``: the LM head reuses the token embedding matrix (GPT-2: on).
- ``pos_encoding``: ``learned`` (GPT-2's table), ``sinusoidal`` (fixed, "Attention is all you
  need") or ``rope`` (rotary, applied to queries and keys; needs an even head size).
- ``activation``: ``gelu`` is GPT-2's tanh approximation (so Hugging Face parity holds); ``relu``.
- ``norm``: ``layernorm`` or ``rmsnorm``; ``norm_eps`` is its epsilon.
- ``norm_position``: ``pre`` (GPT-2: x + f(norm(x))) or ``post`` (the original transformer of
  "Attention is all you need": norm(x + f(x))). A post-norm model keeps the final norm ``ln_f``
  before the LM head (module doc of gptlab/model/gpt.py says why).
- ``attention``: ``full`` causal attention, or ``local``: sliding-window causal attention where
  the token at position i sees positions i - window + 1 .. i (``window`` >= 1 keys, itself
  included). The KV cache of a local model keeps only the last ``window`` keys and values.
- ``mlp``: ``dense`` (GPT-2's MLP) or ``moe``: a mixture of ``n_experts`` MLPs of the same shape,
  each token sent to its ``top_k`` experts by a softmax router (gptlab/model/moe.py);
  ``moe_aux_loss`` is the coefficient of the load-balancing loss the trainer adds to the
  training loss (Switch Transformer: 0.01).

- ``arch``: ``gpt`` (this transformer), or ``lstm`` / ``gru``: a recurrent language model of
  ``n_layer`` cells of width ``n_embd`` with a tied head (gptlab/model/rnn.py), the baseline the
  transformer replaced; it reads the shape fields, ``dropout``, ``embd_dropout``, ``bias`` and
  ``tie_weights`` and ignores the transformer's options. ``encoder``: a BERT-style bidirectional
  encoder with a masked-LM head (gptlab/model/encoder.py; ``type_vocab_size``, ``mask_id``);
  ``encdec``: a T5-style encoder-decoder (gptlab/model/encdec.py; ``rel_buckets``,
  ``rel_max_distance``, ``start_id``). Neither is a next-token language model.

A model file written before a field existed lacks it and gets its default, so it loads as the
model it was (a GPT, pre-norm, full attention, dense MLP).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from gptlab.errors import GptlabError

POS_ENCODINGS = ("learned", "sinusoidal", "rope")
ACTIVATIONS = ("gelu", "relu")
NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
ATTENTIONS = ("full", "local")
MLPS = ("dense", "moe")
ARCHS = ("gpt", "lstm", "gru", "encoder", "encdec")
TRANSFORMER_ARCHS = ("gpt", "encoder", "encdec")  # the archs with attention heads
GPT2_VOCAB_SIZE = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
GPT2_BLOCK_SIZE = 1024
# The fields that fix the tensors' shapes: a model file must give them (a default of 12 layers
# for a file that forgot n_layer would build some other model). The others default as GPT-2.
SHAPE_FIELDS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
# Sanity ceilings, far above any GPT there is (GPT-3 175B: 96 layers, n_embd 12288) yet low
# enough that a corrupt or hostile model.json cannot make gptlab build a model without end
# (n_layer 10^9) or overflow a size computation (n_embd 2^40).
DROPOUT_SITES = ("embd_dropout", "attn_dropout", "resid_dropout")  # optional per-site dropout fields
MAX_EXPERTS = 1024
MAX_SIZES = {"vocab_size": 2**24, "block_size": 2**24, "n_layer": 1024, "n_head": 2**16, "n_embd": 2**16}


@dataclass
class GPTConfig:
    vocab_size: int = GPT2_VOCAB_SIZE
    block_size: int = GPT2_BLOCK_SIZE  # the longest context the model reads (positions 0..block_size-1)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    embd_dropout: float | None = None  # None: dropout (module doc)
    attn_dropout: float | None = None
    resid_dropout: float | None = None
    bias: bool = True
    tie_weights: bool = True
    pos_encoding: str = "learned"
    activation: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    rope_base: float = 10000.0  # RoPE's theta: the longest rotation wavelength scale (only for rope)
    norm_position: str = "pre"
    attention: str = "full"
    # the variants' own settings are read only by their variant (a sweep can vary attention over
    # full,local with one window), but are checked always
    window: int | None = None  # keys each query sees with attention = "local" (itself included)
    mlp: str = "dense"
    n_experts: int = 1  # mlp = "moe" only
    top_k: int = 1  # experts per token (mlp = "moe" only)
    moe_aux_loss: float = 0.01  # load-balancing loss coefficient (mlp = "moe" only)
    arch: str = "gpt"  # "lstm" / "gru": a recurrent model (gptlab/model/rnn.py); "encoder", "encdec"
    # encoder (gptlab/model/encoder.py): BERT's token types (0: none) and the [MASK] token's id
    type_vocab_size: int = 0
    mask_id: int | None = None
    # encdec (gptlab/model/encdec.py): T5's relative position buckets and the decoder's start token
    rel_buckets: int = 32
    rel_max_distance: int = 128
    start_id: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def site_dropout(self, site: str) -> float:
        """The dropout probability at ``site`` (embd, attn or resid): its own field, else dropout."""
        value = getattr(self, f"{site}_dropout")
        return self.dropout if value is None else value

    def validate(self) -> None:
        """Raise GptlabError naming the field when a value is out of range or an unknown option."""
        for name in SHAPE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GptlabError(f"model config: {name} must be a positive integer, got {value!r}")
            if value > MAX_SIZES[name]:
                raise GptlabError(
                    f"model config: {name} must be at most {MAX_SIZES[name]:,}, got {value:,} (a corrupt file?)"
                )
        if self.n_embd % self.n_head and self.arch in TRANSFORMER_ARCHS:  # a recurrent model has no heads
            raise GptlabError(
                f"model config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        for name, allowed in (
            ("pos_encoding", POS_ENCODINGS),
            ("activation", ACTIVATIONS),
            ("norm", NORMS),
            ("norm_position", NORM_POSITIONS),
            ("attention", ATTENTIONS),
            ("mlp", MLPS),
            ("arch", ARCHS),
        ):
            if getattr(self, name) not in allowed:
                raise GptlabError(
                    f"model config: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.pos_encoding == "rope" and self.head_size % 2 and self.arch == "gpt":
            raise GptlabError(
                f"model config: 'rope' needs an even head size (n_embd/n_head), got {self.head_size}"
            )
        for name in ("dropout", "norm_eps", "rope_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise GptlabError(f"model config: {name} must be a number, got {value!r}")
        for name in DROPOUT_SITES:  # None: the same as dropout
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise GptlabError(f"model config: {name} must be a number, got {value!r}")
        for name in ("dropout", *DROPOUT_SITES):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise GptlabError(f"model config: {name} must be in [0, 1), got {value!r}")
        for name in ("norm_eps", "rope_base"):
            if not getattr(self, name) > 0:
                raise GptlabError(f"model config: {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise GptlabError(f"model config: {name} must be true or false, got {getattr(self, name)!r}")
        self._validate_variants()
        self._validate_encoders()

    def _validate_encoders(self) -> None:
        """The fields of the encoder and encoder-decoder (their own ranges, checked always)."""
        for name, low in (
            ("type_vocab_size", 0),
            ("rel_buckets", 2),
            ("rel_max_distance", 2),
            ("start_id", 0),
        ):
            if not _is_int(getattr(self, name), minimum=low):
                raise GptlabError(
                    f"model config: {name} must be an integer >= {low}, got {getattr(self, name)!r}"
                )
        if self.start_id >= self.vocab_size:
            raise GptlabError(
                f"model config: start_id {self.start_id} is outside the vocabulary ({self.vocab_size})"
            )
        if self.mask_id is not None and not (
            _is_int(self.mask_id, minimum=0) and self.mask_id < self.vocab_size
        ):
            raise GptlabError(
                f"model config: mask_id must be a token id below vocab_size, got {self.mask_id!r}"
            )

    def _validate_variants(self) -> None:
        """The fields of the local-attention and mixture-of-experts variants."""
        if self.attention == "local" and not _is_int(self.window, minimum=1):
            raise GptlabError(
                f"model config: attention 'local' needs window, a positive integer; got {self.window!r}"
            )
        if self.window is not None and not _is_int(self.window, minimum=1):  # read by 'local' only
            raise GptlabError(f"model config: window must be a positive integer, got {self.window!r}")
        if not _is_int(self.n_experts, minimum=1) or self.n_experts > MAX_EXPERTS:
            raise GptlabError(
                f"model config: n_experts must be an integer in 1..{MAX_EXPERTS}, got {self.n_experts!r}"
            )
        if not _is_int(self.top_k, minimum=1) or self.top_k > self.n_experts:
            raise GptlabError(
                f"model config: top_k must be an integer in 1..n_experts ({self.n_experts}), got {self.top_k!r}"
            )
        value = self.moe_aux_loss
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value >= 0)
        ):
            raise GptlabError(f"model config: moe_aux_loss must be a number >= 0, got {value!r}")

    def is_gpt2_block(self) -> bool:
        """Whether the blocks are GPT-2's (pre-norm, full attention, dense MLP): what the Hugging
        Face GPT-2 format can hold."""
        return (self.arch, self.norm_position, self.attention, self.mlp) == ("gpt", "pre", "full", "dense")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a dict read from a file (model.json): an unknown key, or a missing shape
        field (``SHAPE_FIELDS``), is an error naming it."""
        if not isinstance(d, dict):
            raise GptlabError(f"model config: expected an object of fields, got {type(d).__name__}")
        missing = [name for name in SHAPE_FIELDS if name not in d]
        if missing:
            raise GptlabError(
                f"model config: missing field {missing[0]!r} (a model file must give {', '.join(SHAPE_FIELDS)})"
            )
        return cls._from_fields(d)

    @classmethod
    def _from_fields(cls, d: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GptlabError(
                f"model config: unknown field {unknown[0]!r} (known fields: {', '.join(sorted(known))})"
            )
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named architecture (``tiny``, ``gpt2-124m`` ... ``gpt2-1558m``) with fields overridden."""
        if name not in PRESETS:
            raise GptlabError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls._from_fields({**PRESETS[name], **overrides})


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


# GPT-2 shapes from the paper / released checkpoints; "tiny" trains on a laptop CPU in minutes.
# vocab_size is usually overridden with the tokenizer's (GPTConfig.preset("tiny", vocab_size=...)).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=GPT2_VOCAB_SIZE, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-355m": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-774m": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-1558m": dict(n_layer=48, n_head=25, n_embd=1600),
}
