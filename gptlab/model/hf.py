"""GPT-2 weights from and to Hugging Face ``transformers`` (``GPT2LMHeadModel``) format: the
mapping of configs and tensors only (reading and writing HF folders is gptlab/hf_folder.py).

Our module names are GPT-2's, so the mapping is short:
- HF stores ``c_attn``, ``c_proj`` and ``c_fc`` as ``Conv1D`` with weights (in, out); ours are
  ``nn.Linear`` with (out, in): those four matrices are transposed, everything else is copied.
- HF checkpoints may carry ``attn.bias`` / ``attn.masked_bias`` buffers (the causal mask, not
  weights): ignored. Keys may or may not start with ``transformer.`` (hub files vs save_pretrained).
- The LM head is tied to the token embedding unless ``tie_word_embeddings`` is false.
- On export, a model without biases gets zero biases (HF GPT-2 always has them: same function).
  Only GPT-2's architecture exports: learned positions, LayerNorm, gelu (tanh) or relu.

Threat model: an HF config is untrusted input: it is validated field by field, and every tensor's
shape is checked against it.
"""

from __future__ import annotations

from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import GPT, MLP_EXPANSION

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
HF_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
HF_PREFIX = "transformer."
# names transformers uses for GELU's tanh approximation (all the same function)
GELU_TANH_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """GPTConfig from a transformers GPT-2 config.json; anything GPT-2-incompatible is an error."""
    if not isinstance(hf, dict):
        raise GptlabError(f"{source}: expected a JSON object with the model's settings")
    if hf.get("model_type", "gpt2") != "gpt2":
        raise GptlabError(
            f"{source}: model_type is {hf.get('model_type')!r}; only GPT-2 ('gpt2') can be imported"
        )
    activation = hf.get("activation_function", "gelu_new")
    if activation not in (*GELU_TANH_NAMES, "relu"):
        raise GptlabError(
            f"{source}: activation_function {activation!r} is not supported (expected one of "
            f"{', '.join(GELU_TANH_NAMES)}, relu)"
        )
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, MLP_EXPANSION * n_embd):
        raise GptlabError(f"{source}: n_inner must be null or {MLP_EXPANSION} * n_embd, got {hf['n_inner']}")
    for field, expected in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
        if hf.get(field, expected) != expected:
            raise GptlabError(f"{source}: {field} = {hf[field]} is not supported (GPT-2 uses {expected})")
    if hf.get("add_cross_attention", False):
        raise GptlabError(f"{source}: add_cross_attention is not supported (a decoder-only GPT has none)")
    try:
        return GPTConfig(
            vocab_size=hf.get("vocab_size", 50257),
            block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
            n_layer=hf.get("n_layer", 12),
            n_head=hf.get("n_head", 12),
            n_embd=n_embd,
            dropout=0.0,  # inference; set it when fine-tuning
            bias=True,
            tie_weights=hf.get("tie_word_embeddings", True),
            activation="relu" if activation == "relu" else "gelu",
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        )
    except GptlabError as e:
        raise GptlabError(f"{source}: {e}") from None


def config_to_hf(config: GPTConfig, eos_id: int | None = None) -> dict[str, Any]:
    """A transformers GPT2Config dict for ``config``; GptlabError if GPT-2 cannot express it."""
    unsupported = [
        (name, getattr(config, name), allowed)
        for name, allowed in (
            ("arch", "gpt"),  # a recurrent model has no GPT-2 form at all
            ("pos_encoding", "learned"),
            ("norm", "layernorm"),
            ("norm_position", "pre"),  # GPT-2's block: pre-norm, full attention, a dense MLP
            ("attention", "full"),
            ("mlp", "dense"),
        )
        if getattr(config, name) != allowed
    ]
    if unsupported:
        name, value, allowed = unsupported[0]
        raise GptlabError(f"cannot export to GPT-2 format: {name} is {value!r}, GPT-2 only has {allowed!r}")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "n_inner": None,
        "activation_function": "gelu_new" if config.activation == "gelu" else "relu",
        "layer_norm_epsilon": config.norm_eps,
        "resid_pdrop": config.site_dropout("resid"),
        "embd_pdrop": config.site_dropout("embd"),
        "attn_pdrop": config.site_dropout("attn"),
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": config.tie_weights,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }


def state_from_hf(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF GPT-2 tensors -> our names and layouts (mask buffers dropped, Conv1D weights transposed)."""
    state = {}
    for key, tensor in hf_state.items():
        if key.endswith(HF_MASK_BUFFERS):
            continue
        name = key if key.startswith(HF_PREFIX) or key == "lm_head.weight" else HF_PREFIX + key
        state[name] = tensor.t().contiguous() if name.endswith(CONV1D_WEIGHTS) else tensor
    return state


def state_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """Our model's tensors in HF GPT2LMHeadModel names and layouts (zero biases if we have none)."""
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_weights:
            continue  # transformers re-ties it to transformer.wte.weight
        state[name] = tensor.t() if name.endswith(CONV1D_WEIGHTS) else tensor
    if not model.config.bias:
        for name, tensor in list(state.items()):
            if name.endswith(".weight") and not name.endswith(("wte.weight", "wpe.weight", "lm_head.weight")):
                out_dim = tensor.shape[-1] if name.endswith(CONV1D_WEIGHTS) else tensor.shape[0]
                state[name[: -len("weight")] + "bias"] = torch.zeros(out_dim, dtype=tensor.dtype)
    return state


def gpt_from_hf_state(
    hf_state: dict[str, torch.Tensor], config: GPTConfig, source: str = "GPT-2 state dict"
) -> GPT:
    """Our GPT from HF GPT-2 tensors and its config (``config_from_hf(...)`` or a preset); a
    missing, extra or misshapen tensor is a GptlabError naming ``source``."""
    return GPT.from_state_dict(config, state_from_hf(hf_state), source=source)
