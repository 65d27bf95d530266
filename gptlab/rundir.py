"""Save and load a model with its tokenizer: the run directory, files a user can open.

    RUN/model.json          {"format": "gptlab-model", "version": 1, "config": {...GPTConfig...},
                             "n_params": ..., "extra": {...}}
    RUN/model.safetensors   the weights (a tied LM head is stored once, as transformer.wte.weight)
    RUN/tokenizer.json      the tokenizer (gptlab.tokenizers format)

A quantised run (``gptlab quantize``, gptlab/model/quantize.py) has the same three files; model.json
gains ``"quantization": {"bits": 8 or 4, "group_size": ..., "scheme": ...}`` and the weights file
holds int8/uint8 ``qweight`` tensors with float32 ``scales`` (and ``mins``) for every quantised
layer. `load_model` rebuilds the quantised modules from it, so generate, chat and eval work as is.

Each file is written atomically (temp file + rename), weights first and model.json last, so a
crash mid-save leaves every file either old or new, never half-written: the previous checkpoint
of a run (same architecture, same tokenizer, older weights) stays loadable.

Threat model: the files may come from anyone. Weights are read with safetensors (or, for a
Hugging Face ``pytorch_model.bin``, ``torch.load(weights_only=True)``), never unpickled; JSON is
validated; a missing, unreadable, truncated or corrupt file or a tensor of the wrong shape is a
GptlabError naming the file (and the tensor with its expected and actual shape), never a crash
deep in torch. model.json's sizes are checked against the weights file's header before anything
is built (a hostile n_layer=10^9 must not build 10^9 blocks), and weights holding NaN/inf are
refused on load, naming the tensor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.hf_folder import HF_CONFIG_FILE, load_hf_gpt2
from gptlab.io import (
    atomic_write,
    atomic_write_json,
    load_safetensors,
    os_errors_as_gptlab,
    read_json,
    read_safetensors_header,
    save_safetensors,
)
from gptlab.model import GPT, GPTConfig
from gptlab.model.build import model_class, model_from_state_dict
from gptlab.model.gpt import check_config_matches_shapes, check_tensor_shapes
from gptlab.model.modes import AUTO, resolve_device, resolve_dtype
from gptlab.model.quantize import is_quantized, quantized_from_state_dict, quantized_tensor_specs

MODEL_FORMAT = "gptlab-model"
MODEL_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CHECKPOINTS_DIR = "checkpoints"  # a training run's checkpoint folders (gptlab.train.checkpoint)
CHECKPOINT_POINTER = "latest.json"  # in CHECKPOINTS_DIR: names the newest complete one


def unwrap(model: torch.nn.Module) -> GPT:
    """The GPT inside torch.compile (``_orig_mod``) and DDP/FSDP (``module``) wrappers."""
    while isinstance(getattr(model, "_orig_mod", None) or getattr(model, "module", None), torch.nn.Module):
        model = getattr(model, "_orig_mod", None) or model.module
    return model


def model_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The tensors to save: the state dict without the tied LM head (it is the token embedding)."""
    model = unwrap(model)
    state = model.state_dict()
    if model.config.tie_weights:
        state.pop("lm_head.weight", None)  # a quantised tied head owns no tensors: nothing to pop
    return state


def save_model(
    run_dir: str | os.PathLike, model: GPT, tokenizer, extra: dict[str, Any] | None = None
) -> Path:
    """Write model.safetensors, tokenizer.json and model.json into ``run_dir`` (created if needed)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GptlabError(f"run directory {run_dir} exists and is not a folder")
    model = unwrap(model)
    meta = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "config": model.config.to_dict(),
        "n_params": model.num_params(),
        "extra": extra or {},
    }
    quantization = getattr(model, "quantization", None)
    if quantization is not None:  # quantised weights are buffers: count the float model's parameters
        meta["n_params"] = _float_num_params(model.config)
        meta["quantization"] = quantization
    with os_errors_as_gptlab(f"cannot save the model to {run_dir}"):
        run_dir.mkdir(parents=True, exist_ok=True)
        save_safetensors(model_state_dict(model), run_dir / WEIGHTS_FILE, metadata={"format": "pt"})
        atomic_write(run_dir / TOKENIZER_FILE, lambda tmp: tokenizer.save(tmp))
        atomic_write_json(run_dir / MODEL_JSON, meta)
    return run_dir


def _float_num_params(config: GPTConfig) -> int:
    with torch.device("meta"):
        return model_class(config)(config).num_params()


def read_model_json(run_dir: str | os.PathLike) -> tuple[GPTConfig, dict[str, Any]]:
    """The model config and the whole model.json of a run directory, validated."""
    path = Path(run_dir) / MODEL_JSON
    meta = read_json(path, "model file")
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise GptlabError(f'{path} is not a gptlab model file (expected "format": "{MODEL_FORMAT}")')
    if meta.get("version") != MODEL_VERSION:
        raise GptlabError(
            f"{path}: unsupported version {meta.get('version')!r} (this gptlab reads {MODEL_VERSION})"
        )
    if not isinstance(meta.get("config"), dict):
        raise GptlabError(f'{path}: field "config" must be an object with the model\'s architecture')
    try:
        config = GPTConfig.from_dict(meta["config"])
    except (GptlabError, TypeError) as e:
        raise GptlabError(f"{path}: {e}") from None
    return config, meta


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None
):
    """Load ``(model, tokenizer)`` from a gptlab run directory or a Hugging Face GPT-2 directory
    (config.json + model.safetensors or pytorch_model.bin + tokenizer files). The model is in eval
    mode, on ``device``, cast to ``dtype`` if given (a torch.dtype or a name like "bfloat16").
    ``dtype="auto"``: bfloat16 where ``device`` runs it natively, else float32 (a quantised model
    keeps its stored dtypes: its kernels already multiply in bfloat16)."""
    path = Path(path)
    auto = isinstance(dtype, str) and dtype.lower() == AUTO
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    path = latest_checkpoint(path)
    if (path / MODEL_JSON).is_file():
        config, meta = read_model_json(path)
        # the config against the weights file's header first: the config's sizes decide what
        # gets built, so they must be the file's before anything is loaded or built
        check_weights_header(config, meta.get("quantization"), path / WEIGHTS_FILE, str(path / MODEL_JSON))
        state = load_safetensors(path / WEIGHTS_FILE)
        if meta.get("quantization") is not None:
            model = quantized_from_state_dict(
                config, meta["quantization"], state, source=str(path / WEIGHTS_FILE)
            )
        else:
            model = model_from_state_dict(config, state, source=str(path / WEIGHTS_FILE))
        tokenizer = _load_tokenizer(path / TOKENIZER_FILE)
    elif (path / HF_CONFIG_FILE).is_file():
        model, tokenizer = load_hf_gpt2(path)
    elif path.is_dir():
        raise GptlabError(
            f"{path} is neither a gptlab run directory (no {MODEL_JSON}) "
            f"nor a Hugging Face GPT-2 directory (no {HF_CONFIG_FILE})"
        )
    else:
        raise GptlabError(
            f"model not found: {path} (expected a run directory with {MODEL_JSON}, or a Hugging Face GPT-2 "
            f"directory; to import a hub model use `gptlab convert --from hf NAME --out RUN`)"
        )
    check_vocab(model, tokenizer, str(path))
    check_finite(model, str(path))
    if (path / MODEL_JSON).is_file() and (meta.get("extra") or {}).get("peft"):  # a --peft fine-tune:
        from gptlab.finetune.peft import load_run_adapter  # an unmergeable adapter beside base weights

        load_run_adapter(model, path, meta["extra"]["peft"])
    if auto and is_quantized(model):
        dtype = None
    model.to(device=device, dtype=dtype)
    return model.eval(), tokenizer


def check_weights_header(config: GPTConfig, quantization: Any, weights: Path, config_source: str) -> None:
    """GptlabError naming the field or the tensor unless the tensor names and shapes in the header
    of ``weights`` are those ``config`` (and ``quantization``) imply. Reads the header only: a
    model.json saying n_layer=10^9 or n_embd=2^40 for a small file is refused before anything
    is allocated."""
    shapes = read_safetensors_header(weights)
    source = str(weights)
    if config.arch == "gpt":  # names the field that differs; a recurrent model's shapes are checked below
        check_config_matches_shapes(config, shapes, source, config_source)
    elif quantization is not None:
        raise GptlabError(
            f"{config_source}: a quantised {config.arch.upper()} model: gptlab quantises GPTs only"
        )
    if quantization is None:
        expected = model_class(config).tensor_shapes(config)
        if config.tie_weights:
            shapes.pop("lm_head.weight", None)  # ignored on load, as GPT.from_state_dict does
    else:
        expected = {
            k: shape for k, (shape, _) in quantized_tensor_specs(config, quantization, source).items()
        }
    check_tensor_shapes(expected, shapes, source)


def check_finite(model: torch.nn.Module, source: str) -> None:
    """GptlabError naming the first tensor holding NaN or inf: such weights give NaN logits, and
    every command would fail later with an obscure error (or print garbage)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise GptlabError(
                f"{source}: the weights contain NaN/inf (tensor {name!r}): the model is broken, e.g. "
                "saved by a training run that diverged; use an earlier checkpoint (such as RUN/best)"
            )


def read_checkpoint_pointer(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """RUN/checkpoints/latest.json of a training run (None when there is none): ``{"step", "dir"}``."""
    path = Path(run_dir) / CHECKPOINTS_DIR / CHECKPOINT_POINTER
    if not path.is_file():
        return None
    pointer = read_json(path, "checkpoint pointer")
    name = pointer.get("dir") if isinstance(pointer, dict) else None
    step = pointer.get("step") if isinstance(pointer, dict) else None
    # a folder name, never a path: the pointer may come from anyone, like every file of a run
    if not (isinstance(name, str) and re.fullmatch(r"step-\d{8,}", name) and type(step) is int):
        raise GptlabError(f'{path}: expected {{"step": N, "dir": "step-NNNNNNNN"}}, got {pointer!r}')
    return pointer


def latest_checkpoint(path: Path) -> Path:
    """A training run's newest committed checkpoint folder, when ``path`` is a run that has one:
    a run killed while publishing that checkpoint's top-level model files has them half old,
    half new; the folder the pointer names is whole. Anything else: ``path`` unchanged."""
    try:
        pointer = read_checkpoint_pointer(path)
    except GptlabError:
        return path  # a damaged pointer: the top-level files are the best left
    if pointer is None:
        return path
    folder = path / CHECKPOINTS_DIR / pointer["dir"]
    if all((folder / name).is_file() for name in (MODEL_JSON, WEIGHTS_FILE, TOKENIZER_FILE)):
        return folder
    return path


def check_vocab(model: GPT, tokenizer, source: str) -> None:
    """A tokenizer whose ids reach past the model's embedding table cannot be used with it."""
    if tokenizer.vocab_size > model.config.vocab_size:
        raise GptlabError(
            f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{model.config.vocab_size} (vocab_size): they do not belong together"
        )


def _load_tokenizer(path: Path):
    from gptlab.tokenizers import load_tokenizer

    if not path.is_file():
        raise GptlabError(f"tokenizer file not found: {path}")
    return load_tokenizer(path)
