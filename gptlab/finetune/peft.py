"""The parameter-efficient family behind ``--peft``: one registry, one adapter-file format.

=========  ======================================  ===================================  =========
method     what trains (the GPT stays frozen)      module                               merges
=========  ======================================  ===================================  =========
lora       low-rank updates of the Linear layers   gptlab.model.lora                    yes
prefix     per-layer key/value prefixes            gptlab.finetune.peft_prefix          no
prompt     soft-prompt input embeddings            gptlab.finetune.peft_prompt          no
adapter    bottleneck MLPs (Houlsby / Pfeiffer)    gptlab.finetune.peft_adapter         no
ia3        activation-scaling vectors              gptlab.finetune.peft_ia3             yes
=========  ======================================  ===================================  =========

"Merges" means the trained model can become a plain GPT with the base architecture (no cost at
inference, loadable by every command). The others add computation that no weight of the base
model can express, so their runs keep the adapter file and rebuild the model from the base.

Adapter files: LoRA keeps its own format (gptlab.model.lora.save_adapter); the other methods
write ``gptlab-peft`` safetensors: the method's parameters plus any other trainable parameter (a
classifier head), with the method, its settings and the model config as JSON metadata. Loading
checks the metadata field by field and every tensor name and shape before copying anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.finetune.peft_adapter import KINDS, apply_adapters
from gptlab.finetune.peft_ia3 import DEFAULT_FEEDFORWARD, DEFAULT_TARGETS, apply_ia3, merge_ia3
from gptlab.finetune.peft_prefix import apply_prefix
from gptlab.finetune.peft_prompt import apply_prompt
from gptlab.io import load_safetensors, parse_json, save_safetensors
from gptlab.model.lora import apply_lora, check_same_model, load_adapter, remove_lora, save_adapter
from gptlab.options import nonnegative_int, option, positive_int

PEFT_FORMAT = "gptlab-peft"
PEFT_VERSION = 1
ADAPTER_FILE = "adapter.safetensors"  # its name in a run directory
DEFAULT_LORA_RANK = 8  # --peft lora without --lora-rank


@dataclass(frozen=True)
class PeftMethod:
    """How to add a method to a GPT, which parameters are its own, and how to merge it (or None)."""

    apply: Callable[[nn.Module, dict], Any]
    owns: Callable[[str], bool]
    merge: Callable[[nn.Module], nn.Module] | None


def _virtual(name: str) -> bool:
    return name.startswith("virtual_tokens.") or ".virtual_tokens." in name


METHODS: dict[str, PeftMethod] = {
    "lora": PeftMethod(
        apply=lambda gpt, s: apply_lora(gpt, s["rank"], s["alpha"], s["dropout"], s["targets"]),
        owns=lambda name: name.endswith((".lora_A", ".lora_B")),
        merge=lambda gpt: remove_lora(gpt, merge=True),
    ),
    "prefix": PeftMethod(
        apply=lambda gpt, s: apply_prefix(gpt, s["tokens"], s["projection"], s["seed"]),
        owns=_virtual,
        merge=None,
    ),
    "prompt": PeftMethod(
        apply=lambda gpt, s: apply_prompt(gpt, s["tokens"], s["seed"]),
        owns=_virtual,
        merge=None,
    ),
    "adapter": PeftMethod(
        apply=lambda gpt, s: apply_adapters(gpt, s["kind"], s["reduction"]),
        owns=lambda name: ".adapter_attn." in name or ".adapter_mlp." in name,
        merge=None,
    ),
    "ia3": PeftMethod(
        apply=lambda gpt, s: apply_ia3(gpt, tuple(s["targets"]), tuple(s["feedforward"])),
        owns=lambda name: name.endswith(".ia3_l"),
        merge=merge_ia3,
    ),
}


@dataclass
class PeftOptions:
    """Which parameter-efficient method trains (None: the chosen weights train directly)."""

    method: str | None = option(
        None,
        "parameter-efficient method: the GPT stays frozen (--lora-rank R alone means lora)",
        flag="--peft",
        choices=tuple(METHODS),
    )
    tokens: int = option(
        20, "prefix/prompt: virtual tokens (they take room in the context)", type=positive_int
    )
    projection: int = option(
        0,
        "prefix: hidden width of the reparameterisation MLP (0: train the prefix directly)",
        type=nonnegative_int,
    )
    adapter: str = option(
        "houlsby", "adapter: houlsby (after attention and MLP) or pfeiffer (after MLP)", choices=tuple(KINDS)
    )
    reduction: int = option(16, "adapter: bottleneck width = n_embd / reduction", type=positive_int)


def peft_option() -> Any:
    """The ``peft`` field of an options class: off by default, its flags in one CLI group."""
    return dataclasses.field(
        default_factory=PeftOptions, metadata={"group": "parameter-efficient (gptlab.finetune.peft)"}
    )


def resolve_peft(peft: PeftOptions, lora) -> tuple[str | None, dict | None]:
    """The method to apply and its settings, from ``--peft`` and the LoRA flags (``lora``, a
    LoraOptions). ``--lora-rank R`` alone means LoRA; a rank with another method is an error."""
    method = peft.method
    if method is not None and method not in METHODS:
        raise GptlabError(f"unknown parameter-efficient method {method!r}: choose from {', '.join(METHODS)}")
    if lora.rank < 0:
        raise GptlabError(f"--lora-rank must be >= 0 (0 = no LoRA), got {lora.rank}")
    if method is None:
        method = "lora" if lora.rank > 0 else None
    elif method != "lora" and lora.rank > 0:
        raise GptlabError(f"--lora-rank sets LoRA's rank; it does not apply to --peft {method}")
    if method is None:
        return None, None
    if method == "lora":
        settings = lora.to_dict() | {"rank": lora.rank or DEFAULT_LORA_RANK}
    elif method == "prefix":
        settings = {"tokens": peft.tokens, "projection": peft.projection, "seed": 0}
    elif method == "prompt":
        settings = {"tokens": peft.tokens, "seed": 0}
    elif method == "adapter":
        settings = {"kind": peft.adapter, "reduction": peft.reduction}
    else:
        settings = {"targets": list(DEFAULT_TARGETS), "feedforward": list(DEFAULT_FEEDFORWARD)}
    return method, settings


def gpt_of(model: nn.Module) -> nn.Module:
    """The GPT itself: ``model``, or the ``gpt`` inside a classifier."""
    return model if hasattr(model, "transformer") else model.gpt


def add_peft(model: nn.Module, method: str | None, settings: dict | None) -> None:
    """Freeze the GPT of ``model`` and add ``method`` to it (nothing when ``method`` is None)."""
    if method is not None:
        METHODS[method].apply(gpt_of(model), settings)


def keep_trainable(model: nn.Module, method: str | None) -> None:
    """Make the method's parameters trainable again after a freeze (``GPTClassifier.set_trainable``)."""
    if method is not None:
        for name, p in model.named_parameters():
            if METHODS[method].owns(name):
                p.requires_grad_(True)


def merges(method: str | None) -> bool:
    return method is None or METHODS[method].merge is not None


def merge_peft(model: nn.Module, method: str) -> nn.Module:
    """Fold the method into the GPT's weights, giving the base architecture (in place)."""
    if METHODS[method].merge is None:
        raise GptlabError(f"{method} cannot be merged into the weights: it adds computation of its own")
    METHODS[method].merge(gpt_of(model))
    return model


def base_gpt(gpt: nn.Module, method: str) -> nn.Module:
    """A new model of ``gpt``'s class holding only its base weights (the method's parameters left out)."""
    owns = METHODS[method].owns
    plain = type(gpt)(gpt.config).to(next(gpt.parameters()).device)
    state = {k: v for k, v in gpt.state_dict().items() if not owns(k)}
    plain.load_state_dict(state)
    return plain.eval()


def load_run_adapter(gpt: nn.Module, run: Path, record: dict) -> None:
    """Add back the adapter an instruct run names in model.json (``extra.peft.adapter``, written
    when its method cannot be merged); a merged run names none and is left as it is."""
    adapter = record.get("adapter") if isinstance(record, dict) else None
    if adapter is not None:
        if not isinstance(adapter, str):
            raise GptlabError(f"{run}: model.json's extra.peft.adapter must be a file name")
        load_peft(gpt, run / Path(adapter).name)


def peft_state_dict(model: nn.Module, method: str) -> dict[str, torch.Tensor]:
    """The method's parameters and every other trainable parameter: all that fine-tuning changed."""
    owns = METHODS[method].owns
    return {n: p.detach() for n, p in model.named_parameters() if owns(n) or p.requires_grad}


def save_peft(model: nn.Module, path: str | os.PathLike, method: str, settings: dict) -> Path:
    """Write the trained parameters of ``model`` (`peft_state_dict`) with the method's metadata."""
    if method == "lora":
        return save_adapter(model, path)
    metadata = {
        "format": PEFT_FORMAT,
        "version": str(PEFT_VERSION),
        "method": method,
        "settings": json.dumps(settings, sort_keys=True),
        "model_config": json.dumps(gpt_of(model).config.to_dict(), sort_keys=True),
    }
    return save_safetensors(peft_state_dict(model, method), path, metadata=metadata)


def read_peft_metadata(path: str | os.PathLike) -> tuple[str, dict]:
    """(method, settings) of an adapter file; LoRA files answer ("lora", their settings)."""
    from safetensors import SafetensorError, safe_open

    source = f"adapter file {path}"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise GptlabError(f"cannot read {source}: {e}") from None
    if meta.get("format") == "gptlab-lora":
        return "lora", {k: meta.get(k) for k in ("rank", "alpha", "dropout", "targets")}
    if meta.get("format") != PEFT_FORMAT:
        raise GptlabError(f"{source} is not a gptlab adapter (metadata 'format' is {meta.get('format')!r})")
    if meta.get("version") != str(PEFT_VERSION):
        raise GptlabError(f"{source}: adapter version {meta.get('version')!r} is not supported")
    method = meta.get("method")
    if method not in METHODS or method == "lora":
        raise GptlabError(f"{source}: unknown method {method!r}")
    settings = parse_json(meta.get("settings", "null"), f"{source}: metadata 'settings'")
    config = parse_json(meta.get("model_config", "null"), f"{source}: metadata 'model_config'")
    if not isinstance(settings, dict) or not isinstance(config, dict):
        raise GptlabError(f"{source}: metadata 'settings' and 'model_config' must be JSON objects")
    return method, settings | {"model_config": config}


def load_peft(model: nn.Module, path: str | os.PathLike) -> str:
    """Add the adapter in ``path`` (any method) to ``model`` and load its tensors; returns the method.
    The file must fit: same model config, same tensor names and shapes, or a GptlabError and nothing loaded."""
    method, settings = read_peft_metadata(path)
    if method == "lora":
        load_adapter(model, path)
        return method
    source = f"adapter file {path}"
    check_same_model(gpt_of(model).config.to_dict(), settings.pop("model_config"), source)
    tensors = load_safetensors(path)
    try:
        add_peft(model, method, settings)
    except KeyError as e:
        raise GptlabError(f"{source}: settings lack {e}") from None
    params = dict(model.named_parameters())
    expected = {n for n in params if METHODS[method].owns(n)}
    problems = [f"no tensor for {k!r}" for k in sorted(expected - set(tensors))[:3]]
    problems += [f"tensor {k!r} has no place in the model" for k in sorted(set(tensors) - set(params))[:3]]
    problems += [
        f"tensor {k!r} has shape {tuple(t.shape)}, the model expects {tuple(params[k].shape)}"
        for k, t in tensors.items()
        if k in params and t.shape != params[k].shape
    ][:3]
    if problems:
        raise GptlabError(f"{source} does not fit the model: {'; '.join(problems)}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
            params[name].requires_grad_(True)  # what the file holds is what trained
    return method


__all__ = [
    "ADAPTER_FILE",
    "METHODS",
    "PEFT_FORMAT",
    "PeftMethod",
    "PeftOptions",
    "add_peft",
    "base_gpt",
    "gpt_of",
    "keep_trainable",
    "load_peft",
    "load_run_adapter",
    "merge_peft",
    "merges",
    "peft_option",
    "peft_state_dict",
    "read_peft_metadata",
    "resolve_peft",
    "save_peft",
]
