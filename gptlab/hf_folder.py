"""A Hugging Face GPT-2 folder, read and written: what ``save_pretrained`` writes and
``GPT2LMHeadModel.from_pretrained`` reads.

    DIR/config.json                             the GPT2Config (gptlab.model.hf maps it)
    DIR/model.safetensors | pytorch_model.bin   the weights in HF's names and Conv1D layouts
    DIR/vocab.json + merges.txt | tokenizer.json   the byte-level BPE tokenizer

gptlab.rundir.load_model reads such a folder like a run; gptlab.convert imports one into a run
and exports a run to one.

Threat model: an HF folder is untrusted input: weights are read with safetensors or
``torch.load(weights_only=True)``, never unpickled; config.json is validated field by field, and
every tensor's shape is checked against it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gptlab.errors import GptlabError
from gptlab.io import (
    atomic_write_json,
    load_safetensors,
    os_errors_as_gptlab,
    read_json,
    save_safetensors,
    torch_load_safe,
)
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import GPT
from gptlab.model.hf import config_from_hf, config_to_hf, gpt_from_hf_state, state_to_hf

HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"  # what we write; we read either of HF_WEIGHT_FILES
HF_WEIGHT_FILES = (HF_WEIGHTS_FILE, "pytorch_model.bin")


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


def read_hf_config(hf_dir: str | os.PathLike) -> GPTConfig:
    """The GPTConfig of an HF directory's config.json, validated."""
    path = Path(hf_dir) / HF_CONFIG_FILE
    return config_from_hf(read_json(path, "Hugging Face config"), str(path))


def from_hf_gpt2(hf_dir: str | os.PathLike, config: GPTConfig | None = None) -> GPT:
    """Our GPT from an HF GPT-2 directory (its config.json read unless ``config`` is given)."""
    hf_dir = Path(hf_dir)
    config = config if config is not None else read_hf_config(hf_dir)
    return gpt_from_hf_state(read_hf_weights(hf_dir), config, source=f"GPT-2 weights in {hf_dir}")


def load_hf_gpt2(hf_dir: str | os.PathLike):
    """``(model, tokenizer)`` from an HF GPT-2 directory with its tokenizer files, as stored
    (gptlab.rundir.load_model checks they belong together and puts the model in eval mode)."""
    from gptlab.tokenizers.interop import load_hf_gpt2_tokenizer

    hf_dir = Path(hf_dir)
    return from_hf_gpt2(hf_dir), load_hf_gpt2_tokenizer(hf_dir)


def to_hf_gpt2(model: GPT, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write config.json and model.safetensors (and the tokenizer's vocab.json / merges.txt if
    given) that ``transformers.GPT2LMHeadModel.from_pretrained(out_dir)`` loads."""
    eos_id = getattr(tokenizer, "eot_id", None)
    hf_config = config_to_hf(model.config, eos_id)  # first: refuse before writing anything
    hf_config["torch_dtype"] = str(model.transformer.wte.weight.dtype).removeprefix("torch.")
    state = state_to_hf(model)
    if tokenizer is not None:  # before the folder is made, not after
        from gptlab.tokenizers.interop import require_bpe

        require_bpe(tokenizer, "a Hugging Face tokenizer folder")
    out_dir = Path(out_dir)
    with os_errors_as_gptlab(f"cannot write the Hugging Face model to {out_dir}"):
        out_dir.mkdir(parents=True, exist_ok=True)
        if tokenizer is not None:
            from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

            save_hf_gpt2_tokenizer(tokenizer, out_dir)
        save_safetensors(state, out_dir / HF_WEIGHTS_FILE, metadata={"format": "pt"})
        atomic_write_json(out_dir / HF_CONFIG_FILE, hf_config)
    return out_dir
