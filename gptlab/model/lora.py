"""LoRA: low-rank adapters (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

Fine-tuning changes a weight matrix W (out, in) by some dW. LoRA bets that dW has low rank and
learns it as a product: W' = W + (alpha / r) * B @ A, with A (r, in) and B (out, r), r << in.
W stays frozen; only A and B train, so a 124M-parameter GPT-2 adapts with well under 1% of its
parameters trainable, and the adapter file holds only A and B (a few MB at most).

- A starts random (Kaiming-uniform, the default init of an nn.Linear, as in the paper's code and
  ``peft``) and B starts at zero, so at step 0 the adapted model *is* the base model.
- ``alpha / r`` scales the update so that changing the rank does not change the effective step
  size much; dropout is applied to the LoRA branch's input only.
- ``merge_lora`` folds ``scaling * B @ A`` into W (no extra cost at inference);
  ``unmerge_lora`` takes it out again. Outputs agree merged vs unmerged up to float rounding.

`LoRALinear` keeps the wrapped layer's own ``weight`` and ``bias`` Parameters under the same names,
so a model with adapters still has the state-dict keys of the base model (``...c_attn.weight``)
plus ``...c_attn.lora_A`` / ``...c_attn.lora_B``: the base checkpoint loads into it unchanged.

Threat model for ``load_adapter``: an adapter file may come from anyone. It is read with
safetensors (no pickle); its metadata is JSON checked field by field, and every tensor name and
shape is checked against the model before anything is copied, so an adapter made for another
model gives a GptlabError naming the difference instead of silently loading into the wrong layers.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.io import load_safetensors, parse_json, save_safetensors
from gptlab.model.config import DROPOUT_SITES

DEFAULT_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # every Linear in a block
ADAPTER_FORMAT = "gptlab-lora"
ADAPTER_VERSION = 1
KAIMING_A = math.sqrt(5)  # nn.Linear's default init: kaiming_uniform_(a=sqrt(5)), used for A
EXPERT_INDEX = re.compile(r"\.experts\.\d+\.")  # "mlp.experts.3.c_fc" -> "mlp.c_fc"
BLOCK_PREFIX = re.compile(r"^.*\.h\.\d+\.")  # "transformer.h.3.attn.c_attn" -> "attn.c_attn"
# model config fields that do not change which weights fit
CONFIG_FIELDS_IGNORED = ("dropout", *DROPOUT_SITES)


class LoRALinear(nn.Module):
    """A Linear layer plus a trainable low-rank update: y = x W^T + b + scaling * dropout(x) A^T B^T.

    Built from an existing ``nn.Linear``: it takes over that layer's ``weight`` and ``bias``
    Parameters (same objects, same names) and adds ``lora_A`` (r, in) and ``lora_B`` (out, r).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise GptlabError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        check_lora_args(rank, alpha, dropout)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (out, in), frozen by apply_lora
        self.bias = base.bias  # (out,) or None
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=KAIMING_A)
        self.lora_dropout = nn.Dropout(dropout)
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update LoRA adds to W: scaling * B @ A, shape (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (B, T, out)
        if not self.merged:
            # A first, then B: the cheap order, (B, T, in) -> (B, T, r) -> (B, T, out)
            y = y + (self.lora_dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling
        return y

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W, so inference costs what the base layer costs."""
        if not self.merged:
            self.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of W again (exact up to float rounding)."""
        if self.merged:
            self.weight -= self.delta_weight()
            self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear computing what this layer computes (the update merged into W)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear = linear.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            weight = self.weight if self.merged else self.weight + self.delta_weight()
            linear.weight.copy_(weight)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"alpha={self.alpha:g}, dropout={self.lora_dropout.p:g}, merged={self.merged}"
        )


def check_lora_args(rank: int, alpha: float, dropout: float) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise GptlabError(f"LoRA rank must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise GptlabError(f"LoRA alpha must be a positive number, got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise GptlabError(f"LoRA dropout must be in [0, 1), got {dropout!r}")


def _matches(name: str, target: str) -> bool:
    """``name`` ends with ``target``; an expert's layer also matches its MLP's name, so "mlp.c_fc"
    adapts ``...mlp.experts.N.c_fc`` of every expert of a mixture-of-experts block."""
    return any(n == target or n.endswith("." + target) for n in (name, EXPERT_INDEX.sub(".", name)))


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRA layers by module name (empty if no adapter is applied)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: tuple[str, ...] | list[str] = DEFAULT_TARGETS,
) -> nn.Module:
    """Freeze every parameter of ``model`` and wrap the chosen Linear layers in `LoRALinear`.

    ``targets`` are module-name suffixes: ``"attn.c_attn"`` matches ``transformer.h.N.attn.c_attn``
    in every block. A target that matches no Linear layer is an error (a typo would otherwise
    train nothing). Modifies ``model`` in place and returns it. Parameters added to the model
    afterwards (a classification head) keep their own ``requires_grad``: apply LoRA to the GPT
    inside a classifier, not to the classifier, to keep its head trainable.
    """
    check_lora_args(rank, alpha, dropout)
    arch = getattr(getattr(model, "config", None), "arch", "gpt")
    if arch != "gpt":  # the fused cell reads its weights directly: no Linear layer to wrap
        raise GptlabError(
            f"LoRA adapts a transformer's Linear layers; this model is a recurrent {arch.upper()} "
            f"whose weights sit inside one nn.{arch.upper()}: fine-tune it without LoRA "
            "(e.g. --trainable all or last:N)"
        )
    targets = tuple(targets)
    if not targets:
        raise GptlabError("LoRA targets: give at least one module name (e.g. attn.c_attn)")
    if lora_modules(model):
        raise GptlabError("the model already has LoRA adapters; apply LoRA once")
    named = dict(model.named_modules())
    chosen: list[str] = []
    for target in targets:
        hits = [name for name in named if _matches(name, target)]
        if not hits:
            linears = sorted({BLOCK_PREFIX.sub("", n) for n, m in named.items() if isinstance(m, nn.Linear)})
            raise GptlabError(
                f"LoRA target {target!r} matches no module of the model (Linear layers: {', '.join(linears)})"
            )
        for name in hits:
            if not isinstance(named[name], nn.Linear):
                raise GptlabError(
                    f"LoRA target {target!r} matches {name!r}, a {type(named[name]).__name__}, not a Linear layer"
                )
        chosen += [h for h in hits if h not in chosen]
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    for name in chosen:
        if uses[id(named[name].weight)] > 1:  # merging would change the other user too
            raise GptlabError(
                f"LoRA target {name!r} shares its weight with another module (tied weights); choose another target"
            )

    for p in model.parameters():
        p.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(named[name], rank, alpha, dropout))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (for inference); ``unmerge_lora`` undoes it."""
    for module in lora_modules(model).values():
        module.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take every merged adapter out of its base weight again (to keep training or swap adapters)."""
    for module in lora_modules(model).values():
        module.unmerge()
    return model


def remove_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every `LoRALinear` by a plain nn.Linear: with the update merged in (``merge=True``),
    giving a model with the base architecture and state-dict keys, or the base weights alone."""
    for name, module in lora_modules(model).items():
        if not merge:
            module.unmerge()
            module.lora_B.data.zero_()  # the update vanishes: to_linear() gives the base layer
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.to_linear())
    return model


@dataclass(frozen=True)
class ParamCount:
    """Trainable vs all parameters (a tied matrix counts once)."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} of {self.total:,} ({self.percent:.2f}%)"


def count_trainable(model: nn.Module) -> ParamCount:
    """How many parameters train (``requires_grad``) and how many there are in all."""
    params = list(model.parameters())  # deduplicated: a tied matrix appears once
    return ParamCount(
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
    )


# --- adapter files ----------------------------------------------------------------------------


def lora_state_dict(model: nn.Module, include_trainable: bool = True) -> dict[str, torch.Tensor]:
    """What an adapter file holds: every ``lora_A`` / ``lora_B``, and (``include_trainable``) every
    other parameter that trains, such as a classification head: everything fine-tuning changed."""
    state = {}
    for name, p in model.named_parameters():
        is_lora = name.endswith((".lora_A", ".lora_B"))
        if is_lora or (include_trainable and p.requires_grad):
            state[name] = p.detach()
    return state


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    for holder in (model, getattr(model, "gpt", None)):
        config = getattr(holder, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            return config.to_dict()
    return None


def save_adapter(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the adapter (see `lora_state_dict`) to a safetensors file, with its rank, alpha,
    dropout, targets and the model config as metadata so that `load_adapter` can check them."""
    modules = lora_modules(model)
    if not modules:
        raise GptlabError("the model has no LoRA adapters to save (apply_lora first)")
    first = next(iter(modules.values()))
    names = list(modules)
    metadata = {
        "format": ADAPTER_FORMAT,
        "version": str(ADAPTER_VERSION),
        "rank": str(first.rank),
        "alpha": repr(first.alpha),
        "dropout": repr(first.lora_dropout.p),
        "targets": json.dumps(sorted({BLOCK_PREFIX.sub("", n) for n in names})),
    }
    config = _model_config(model)
    if config is not None:
        metadata["model_config"] = json.dumps(config, sort_keys=True)
    return save_safetensors(lora_state_dict(model), path, metadata=metadata)


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def _parse_metadata(meta: dict[str, str], source: str) -> dict[str, Any]:
    if meta.get("format") != ADAPTER_FORMAT:
        raise GptlabError(
            f"{source} is not a gptlab LoRA adapter (metadata 'format' is {meta.get('format')!r}, "
            f"expected {ADAPTER_FORMAT!r})"
        )
    if meta.get("version") != str(ADAPTER_VERSION):
        raise GptlabError(
            f"{source}: adapter version {meta.get('version')!r} is not supported (expected {ADAPTER_VERSION})"
        )
    try:
        parsed = dict(
            rank=int(meta["rank"]),
            alpha=float(meta["alpha"]),
            dropout=float(meta["dropout"]),
            targets=parse_json(meta["targets"], f"{source}: adapter metadata 'targets'"),
            model_config=parse_json(meta["model_config"], f"{source}: adapter metadata 'model_config'")
            if "model_config" in meta
            else None,
        )
    except (KeyError, ValueError) as e:
        raise GptlabError(f"{source}: malformed adapter metadata ({type(e).__name__}: {e})") from None
    if not isinstance(parsed["targets"], list) or not all(isinstance(t, str) for t in parsed["targets"]):
        raise GptlabError(f"{source}: adapter metadata 'targets' must be a list of module names")
    if parsed["model_config"] is not None and not isinstance(parsed["model_config"], dict):
        raise GptlabError(f"{source}: adapter metadata 'model_config' must be a JSON object")
    check_lora_args(parsed["rank"], parsed["alpha"], parsed["dropout"])
    return parsed


def check_same_model(ours: dict[str, Any], theirs: dict[str, Any], source: str) -> None:
    """A GptlabError naming the first differences between the model's config and the config an
    adapter file records (dropout rates aside: they do not change which weights fit)."""
    diffs = [
        f"{k} is {theirs.get(k)!r} in the adapter, {ours.get(k)!r} in the model"
        for k in sorted(set(ours) | set(theirs))
        if k not in CONFIG_FIELDS_IGNORED and ours.get(k) != theirs.get(k)
    ]
    if diffs:
        raise GptlabError(f"{source} was made for a different model: {'; '.join(diffs[:3])}")


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load an adapter written by `save_adapter` into ``model`` (in place; returned).

    A model without adapters gets them first (`apply_lora` with the file's rank, alpha, dropout
    and targets). The loaded tensors are left trainable, as they were when saved. The file must fit the model: same model config, same LoRA layers and shapes;
    any difference is a GptlabError naming it, and nothing is loaded.
    """
    path = Path(path)
    source = f"adapter file {path}"
    tensors = load_safetensors(path)
    meta = _parse_metadata(_read_metadata(path), source)

    ours = _model_config(model)
    if ours is not None and meta["model_config"] is not None:
        check_same_model(ours, meta["model_config"], source)

    modules = lora_modules(model)
    if any(m.merged for m in modules.values()):
        raise GptlabError(f"cannot load {source} into a model whose adapters are merged: unmerge_lora first")
    if not modules:
        apply_lora(model, meta["rank"], meta["alpha"], meta["dropout"], meta["targets"])

    params = dict(model.named_parameters())
    expected = set(lora_state_dict(model, include_trainable=False))
    missing = sorted(expected - set(tensors))
    unknown = sorted(set(tensors) - set(params))
    if missing or unknown:
        problems = [f"no tensor for {k!r}" for k in missing[:3]] + [
            f"tensor {k!r} has no place in the model" for k in unknown[:3]
        ]
        raise GptlabError(
            f"{source} does not fit the model (made for a different model?): {'; '.join(problems)}"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise GptlabError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(params[name].shape)} (made for a different model or rank?)"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
            params[name].requires_grad_(True)  # what the adapter holds is what trained
    return model
