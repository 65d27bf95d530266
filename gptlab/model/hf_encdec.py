"""Hugging Face ``BertForMaskedLM`` and ``T5ForConditionalGeneration`` weights as gptlab's
`Encoder` and `EncoderDecoder`: the mapping of configs and tensor names (a plain state dict and
config.json dict in, a model out; ``transformers`` is not needed).

BERT keeps q, k and v apart; our encoder fuses them (``c_attn``, rows q then k then v), so those
three are concatenated; every other tensor is renamed only. T5's names map one to one; the
relative position tables live in block 0 of each HF stack and are shared by all layers, as ours
(one per stack). Buffers (``position_ids``) and the stacks' copies of the shared embedding are
skipped. An HF config is untrusted input: unsupported settings are refused by name, and every
tensor's shape is checked by `from_state_dict`.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.encdec import EncoderDecoder
from gptlab.model.encoder import Encoder
from gptlab.model.gpt import MLP_EXPANSION

BERT_NAMES = [  # (HF pattern, gptlab name); \1 is the layer index
    (r"bert\.embeddings\.word_embeddings\.", "transformer.wte."),
    (r"bert\.embeddings\.position_embeddings\.", "transformer.wpe."),
    (r"bert\.embeddings\.token_type_embeddings\.", "transformer.wtt."),
    (r"bert\.embeddings\.LayerNorm\.", "transformer.ln_e."),
    (r"bert\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"transformer.h.\1.attn.c_proj."),
    (r"bert\.encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"transformer.h.\1.ln_1."),
    (r"bert\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"transformer.h.\1.mlp.0."),
    (r"bert\.encoder\.layer\.(\d+)\.output\.dense\.", r"transformer.h.\1.mlp.2."),
    (r"bert\.encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"transformer.h.\1.ln_2."),
    (r"cls\.predictions\.transform\.dense\.", "mlm_transform.0."),
    (r"cls\.predictions\.transform\.LayerNorm\.", "mlm_transform.2."),
    (r"cls\.predictions\.decoder\.", "lm_head."),
    (r"cls\.predictions\.bias", "lm_head.bias"),
]
BERT_QKV = re.compile(r"bert\.encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)")
T5_NAMES = [
    (r"shared\.", "transformer.wte."),
    (r"lm_head\.", "lm_head."),
    (r"encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.", "transformer.enc_rel."),
    (r"decoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.", "transformer.dec_rel."),
    (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"transformer.enc.\1.attn."),
    (r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"transformer.enc.\1.ln_1."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi\.", r"transformer.enc.\1.mlp.0."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", r"transformer.enc.\1.mlp.3."),
    (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"transformer.enc.\1.ln_2."),
    (r"encoder\.final_layer_norm\.", "transformer.enc_ln."),
    (r"decoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"transformer.h.\1.attn."),
    (r"decoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"transformer.h.\1.ln_1."),
    (r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.", r"transformer.h.\1.cross."),
    (r"decoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"transformer.h.\1.ln_x."),
    (r"decoder\.block\.(\d+)\.layer\.2\.DenseReluDense\.wi\.", r"transformer.h.\1.mlp.0."),
    (r"decoder\.block\.(\d+)\.layer\.2\.DenseReluDense\.wo\.", r"transformer.h.\1.mlp.3."),
    (r"decoder\.block\.(\d+)\.layer\.2\.layer_norm\.", r"transformer.h.\1.ln_2."),
    (r"decoder\.final_layer_norm\.", "transformer.ln_f."),
]
SKIPPED = re.compile(r".*(position_ids|token_type_ids)$|(encoder|decoder)\.embed_tokens\.weight$")


def _require(hf: dict[str, Any], field: str, allowed, source: str) -> Any:
    if hf.get(field) not in allowed:
        raise GptlabError(f"{source}: {field} = {hf.get(field)!r} is not supported (expected {allowed})")
    return hf.get(field)


def _rename(
    state: dict[str, torch.Tensor], names: list[tuple[str, str]], source: str
) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        if SKIPPED.match(key):
            continue
        for pattern, target in names:
            new, n = re.subn("^" + pattern, target, key)
            if n:
                out[new] = tensor
                break
        else:
            raise GptlabError(f"{source}: unexpected tensor {key!r}")
    return out


def encoder_from_bert(
    hf: dict[str, Any], state: dict[str, torch.Tensor], mask_id: int | None = None, source: str = "BERT"
) -> Encoder:
    """An `Encoder` holding a ``BertForMaskedLM``'s weights (``hf``: its config.json as a dict)."""
    _require(hf, "model_type", ("bert",), source)
    act = _require(hf, "hidden_act", ("gelu", "relu"), source)
    _require(hf, "intermediate_size", (MLP_EXPANSION * hf.get("hidden_size", 0),), source)
    _require(hf, "position_embedding_type", ("absolute", None), source)
    config = GPTConfig(
        vocab_size=hf["vocab_size"],
        block_size=hf["max_position_embeddings"],
        n_layer=hf["num_hidden_layers"],
        n_head=hf["num_attention_heads"],
        n_embd=hf["hidden_size"],
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        activation=act,
        norm_position="post",
        arch="encoder",
        type_vocab_size=hf.get("type_vocab_size", 2),
        mask_id=mask_id,
        tie_weights=hf.get("tie_word_embeddings", True),
    )
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    rest = {}
    for key, tensor in state.items():
        if m := BERT_QKV.match(key):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = tensor
        else:
            rest[key] = tensor
    out = _rename(rest, BERT_NAMES, source)
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise GptlabError(f"{source}: layer {layer} lacks one of query/key/value {kind}")
        out[f"transformer.h.{layer}.attn.c_attn.{kind}"] = torch.cat(
            [parts[p] for p in ("query", "key", "value")]
        )
    return Encoder.from_state_dict(config, out, source=source)


def encdec_from_t5(
    hf: dict[str, Any], state: dict[str, torch.Tensor], block_size: int = 512, source: str = "T5"
) -> EncoderDecoder:
    """An `EncoderDecoder` holding a ``T5ForConditionalGeneration``'s weights (T5 v1.0 layout:
    ReLU MLP, d_kv * num_heads = d_model, d_ff = 4 d_model, as many decoder as encoder layers).
    T5 has no context limit; ``block_size`` bounds the lengths gptlab accepts."""
    _require(hf, "model_type", ("t5",), source)
    _require(hf, "feed_forward_proj", ("relu",), source)
    d = hf["d_model"]
    _require(hf, "d_ff", (MLP_EXPANSION * d,), source)
    _require(hf, "d_kv", (d // hf["num_heads"],), source)
    _require(hf, "num_decoder_layers", (hf["num_layers"], None), source)
    config = GPTConfig(
        vocab_size=hf["vocab_size"],
        block_size=block_size,
        n_layer=hf["num_layers"],
        n_head=hf["num_heads"],
        n_embd=d,
        bias=False,
        norm="rmsnorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        activation="relu",
        arch="encdec",
        rel_buckets=hf.get("relative_attention_num_buckets", 32),
        rel_max_distance=hf.get("relative_attention_max_distance", 128),
        start_id=hf.get("decoder_start_token_id", 0),
        tie_weights=hf.get("tie_word_embeddings", True),
    )
    return EncoderDecoder.from_state_dict(config, _rename(state, T5_NAMES, source), source=source)
