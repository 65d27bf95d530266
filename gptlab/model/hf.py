"""GPT-2 weights from and to Hugging Face ``transformers`` (``GPT2LMHeadModel``) format.

Our module names are GPT-2's, so the mapping is short:
- HF stores ``c_attn``, ``c_proj`` and ``c_fc`` as ``Conv1D`` with weights (in, out); ours are
  ``nn.Linear`` with (out, in): those four matrices are transposed, everything else is copied.
- HF checkpoints may carry ``attn.bias`` / ``attn.masked_bias`` buffers (the causal mask, not
  weights): ignored. Keys may or may not start with ``transformer.`` (hub files vs save_pretrained).
- The LM head is tied to the token embedding unless ``tie_word_embeddings`` is false.
- On export, a model without biases gets zero biases (HF GPT-2 always has them: same function).
  Only GPT-2's architecture exports: learned positions, LayerNorm, gelu (tanh) or relu.

Threat model: an HF directory is untrusted input: weights are read with safetensors or
``torch.load(weights_only=True)``, config.json is validated field by field, shapes are checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, load_safetensors, read_json, save_safetensors, torch_load_safe
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import GPT, MLP_EXPANSION

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
HF_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
HF_PREFIX = "transformer."
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# names transformers uses for GELU's tanh approximation (all the same function)
GELU_TANH_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
HUB_FILES = [
    "config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
]


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
        for name, allowed in (("pos_encoding", "learned"), ("norm", "layernorm"))
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
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
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


def read_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of an HF directory: model.safetensors, else pytorch_model.bin (weights_only)."""
    for name in HF_WEIGHT_FILES:
        path = hf_dir / name
        if path.is_file():
            state = load_safetensors(path) if name.endswith(".safetensors") else torch_load_safe(path)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise GptlabError(f"{path} does not hold a flat dict of tensors (a GPT-2 state dict)")
            return state
    raise GptlabError(f"no weights in {hf_dir}: expected {' or '.join(HF_WEIGHT_FILES)}")


def from_hf_gpt2(hf_dir_or_state_dict: str | os.PathLike | dict, config: GPTConfig | None = None) -> GPT:
    """Our GPT from an HF GPT-2 directory (config.json read unless ``config`` is given) or from an
    HF state dict (then ``config`` is required, e.g. ``config_from_hf(...)`` or a preset)."""
    if isinstance(hf_dir_or_state_dict, dict):
        if config is None:
            raise GptlabError(
                "from_hf_gpt2 with a state dict needs the config (e.g. GPTConfig.preset('gpt2-124m'))"
            )
        hf_state, source = hf_dir_or_state_dict, "GPT-2 state dict"
    else:
        hf_dir = Path(hf_dir_or_state_dict)
        if config is None:
            config = config_from_hf(
                read_json(hf_dir / "config.json", "Hugging Face config"), str(hf_dir / "config.json")
            )
        hf_state, source = read_hf_weights(hf_dir), f"GPT-2 weights in {hf_dir}"
    return GPT.from_state_dict(config, state_from_hf(hf_state), source=source)


def load_hf_gpt2(hf_dir: str | os.PathLike):
    """``(model, tokenizer)`` from an HF GPT-2 directory with its tokenizer files."""
    from gptlab.rundir import check_vocab
    from gptlab.tokenizers.interop import load_hf_gpt2_tokenizer

    hf_dir = Path(hf_dir)
    model, tokenizer = from_hf_gpt2(hf_dir), load_hf_gpt2_tokenizer(hf_dir)
    check_vocab(model, tokenizer, str(hf_dir))
    return model, tokenizer


def to_hf_gpt2(model: GPT, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write config.json and model.safetensors (and the tokenizer's vocab.json / merges.txt if
    given) that ``transformers.GPT2LMHeadModel.from_pretrained(out_dir)`` loads."""
    from gptlab.rundir import make_output_dir, os_errors_as_gptlab

    eos_id = getattr(tokenizer, "eot_id", None)
    hf_config = config_to_hf(model.config, eos_id)  # first: refuse before writing anything
    hf_config["torch_dtype"] = str(model.transformer.wte.weight.dtype).removeprefix("torch.")
    state = state_to_hf(model)
    if tokenizer is not None:  # before the folder is made, not after
        from gptlab.tokenizers.interop import require_bpe

        require_bpe(tokenizer, "a Hugging Face tokenizer folder")
    out_dir = make_output_dir(out_dir, "export folder")
    with os_errors_as_gptlab(f"cannot write the Hugging Face model to {out_dir}"):
        if tokenizer is not None:
            from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

            save_hf_gpt2_tokenizer(tokenizer, out_dir)
        save_safetensors(state, out_dir / "model.safetensors", metadata={"format": "pt"})
        atomic_write_json(out_dir / "config.json", hf_config)
    return out_dir


def looks_like_local_path(source: str) -> bool:
    """True when ``source`` can only mean a local folder, not a hub name (NAME or OWNER/NAME).

    It starts with ``.``, ``/`` or ``~``, has more than two components, or its first component is
    a local folder: ``runs/gpt2`` beside a ``runs/`` folder is a typo'd path, not hub user "runs".
    """
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        return True
    first = source.split("/", 1)[0]
    return "/" in source and Path(first).is_dir()


def resolve_hf_source(source: str, revision: str | None = None) -> Path:
    """A local HF directory, or a hub name (``gpt2``, ``openai-community/gpt2``) downloaded with
    huggingface_hub when online, at ``revision`` (a branch, tag or commit) when given; offline or
    without huggingface_hub, a GptlabError says so."""
    path = Path(source).expanduser()
    if path.exists() or looks_like_local_path(source):
        if not path.exists():
            raise GptlabError(
                f"no such directory: {source} (give a folder with a Hugging Face GPT-2 model, or a "
                "hub name such as gpt2 or openai-community/gpt2)"
            )
        if not path.is_dir():
            raise GptlabError(
                f"{source} is not a directory with a Hugging Face GPT-2 model (config.json + weights)"
            )
        if revision is not None:
            raise GptlabError(
                f"--revision {revision} only applies to hub downloads, and {source} is a local "
                "directory; leave --revision out"
            )
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise GptlabError(
            f"{source!r} is not a local directory, and downloading it needs huggingface_hub "
            "(pip install 'gptlab[hf]')"
        ) from None
    at = f" at revision {revision!r}" if revision is not None else ""
    try:
        return Path(snapshot_download(repo_id=source, revision=revision, allow_patterns=HUB_FILES))
    except Exception as e:  # network, auth and not-found errors all mean the same to the user
        raise GptlabError(
            f"cannot download {source!r}{at} from the Hugging Face hub ({type(e).__name__}: {e}); "
            "without network access, download the model elsewhere and pass its directory"
        ) from None


def convert_from_hf(source: str, out_dir: str | os.PathLike, revision: str | None = None) -> tuple[Path, GPT]:
    """Import an HF GPT-2 directory or hub name (at ``revision``) into a gptlab run directory."""
    from gptlab.rundir import save_model

    model, tokenizer = load_hf_gpt2(resolve_hf_source(source, revision))
    extra = {"converted_from": source} | ({"revision": revision} if revision is not None else {})
    return save_model(out_dir, model, tokenizer, extra=extra), model


def export_to_hf(model_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export a gptlab run directory to an HF GPT-2 directory (weights, config, tokenizer files)."""
    from gptlab.rundir import load_model

    model, tokenizer = load_model(model_path)
    return to_hf_gpt2(model, out_dir, tokenizer)
