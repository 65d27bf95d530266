"""What classification and instruction fine-tuning share: the options they both take, the
optimiser and schedule, LoRA set-up, the "forgetting" measurement, memory and time bookkeeping.
(The training loop they share is gptlab.finetune.loop.)

Options are dataclass fields whose metadata (help, checks) the CLI turns into flags
(gptlab.commands.add_dataclass_arguments): the field defaults are the only defaults.

Forgetting: fine-tuning moves the weights the language model was pretrained with. We measure the
mean next-token loss (and perplexity) of the GPT on its own pretraining val split before and
after: if it climbs a lot, the fine-tune has overwritten what pretraining learned (catastrophic
forgetting), which head-only training and LoRA avoid by construction or by design.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.finetune.peft_virtual import virtual_token_count
from gptlab.model.lora import DEFAULT_TARGETS, apply_lora
from gptlab.model.modes import eval_mode
from gptlab.options import (
    nonnegative_float,
    nonnegative_int,
    option,
    positive_float,
    positive_int,
    seed_type,
    unit_interval_from_zero,
)
from gptlab.train.optim import make_adamw, set_lr
from gptlab.train.schedule import LRSchedule

EVAL_MAX_BATCHES = 20  # windows of the pretraining val split scored for the forgetting measure


# the options both fine-tunes take: their metadata (each options class picks its own defaults)
TRAINING_FLAGS: dict[str, dict[str, Any]] = {
    "model": {"help": "base model: a gptlab run or HF GPT-2 folder", "metavar": "RUN"},
    "data": {"help": "the task's data file", "metavar": "FILE"},
    "out": {"help": "output run directory", "metavar": "DIR"},
    "val_fraction": {},
    "test_fraction": {},
    "seed": {"type": seed_type},
    "epochs": {"type": positive_int},
    "batch_size": {"type": positive_int},
    "lr": {"type": positive_float, "help": "peak learning rate (warmup, then cosine to lr/10)"},
    "weight_decay": {"type": nonnegative_float},
    "grad_clip": {"type": nonnegative_float, "help": "max gradient norm (0: off)"},
    "label_smoothing": {
        "type": unit_interval_from_zero,
        "help": "eps of the training loss's label smoothing (F.cross_entropy's); val/test losses stay plain",
        "metavar": "EPS",
    },
    "max_minutes": {"type": positive_float, "help": "stop training after this many minutes"},
    "device": {"help": "cpu, cuda, cuda:1, mps (default: cuda if available)"},
    "progress": {"help": "no progress bar"},
}


def base_model_option() -> Any:
    """``model``: keyword-only and None by default, so that ``--after RUN`` can stand in for it
    (gptlab.finetune.continual; the options' check asks for one of the two)."""
    meta = {**TRAINING_FLAGS["model"], "help": "base model: a gptlab run or HF GPT-2 folder (or --after RUN)"}
    return field(default=None, kw_only=True, metadata=meta)


def training_option(name: str, default: Any = MISSING) -> Any:
    """The field of the shared option ``name`` (`TRAINING_FLAGS`) with this class's default."""
    return option(default, **TRAINING_FLAGS[name])


@dataclass
class LoraOptions:
    """LoRA on the GPT's Linear layers (rank 0 = no LoRA, train the chosen parameters directly)."""

    rank: int = option(
        0, "train rank-R adapters instead of the weights (0: off)", type=nonnegative_int, metavar="R"
    )
    alpha: float = option(16.0, "LoRA scaling numerator (update * alpha/r)", type=positive_float)
    dropout: float = option(0.0, "dropout on the LoRA branch input")
    targets: tuple[str, ...] = option(
        DEFAULT_TARGETS,
        "module-name suffixes to adapt (default: every Linear of each block)",
        metavar="MODULE",
        nargs="+",
    )

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
        }


def lora_option() -> Any:
    """The ``lora`` field of an options class: LoRA off by default, its flags in one CLI group."""
    return field(default_factory=LoraOptions, metadata={"group": "LoRA (gptlab.model.lora)"})


def add_lora(gpt: nn.Module, options: LoraOptions) -> None:
    """Wrap the GPT's target layers in LoRALinear (base weights frozen) when ``options.rank > 0``."""
    if options.rank < 0:
        raise GptlabError(f"--lora-rank must be >= 0 (0 = no LoRA), got {options.rank}")
    if options.enabled:
        apply_lora(gpt, options.rank, options.alpha, options.dropout, options.targets)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device):
    return make_adamw(model, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), device_type=device.type)


class StepSchedule:
    """Linear warmup over the first ``warmup_fraction`` of ``total_steps``, then cosine to lr/10."""

    def __init__(self, optimizer, lr: float, total_steps: int, warmup_fraction: float = 0.1) -> None:
        if not 0 <= warmup_fraction < 1:
            raise GptlabError(f"warmup fraction must be in [0, 1), got {warmup_fraction}")
        self.optimizer = optimizer
        self.schedule = LRSchedule(
            lr=lr, min_lr=lr / 10, warmup=int(total_steps * warmup_fraction), decay_steps=max(1, total_steps)
        )

    def set(self, step: int) -> float:
        lr = self.schedule.lr_at(step)
        set_lr(self.optimizer, lr)
        return lr


def check_label_smoothing(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise GptlabError(f"label_smoothing must be in [0, 1), got {value!r}")


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        raise GptlabError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value!r}")


# --- forgetting ---------------------------------------------------------------------------------


@torch.no_grad()
def lm_val_loss(gpt: nn.Module, data_dir: Path, max_batches: int = EVAL_MAX_BATCHES) -> dict | None:
    """Mean next-token loss and perplexity of ``gpt`` on the val split of ``data_dir`` (fixed
    windows of the model's context, the same on every call). None if the split is too short."""
    from gptlab.data.shards import TokenDataset, iter_eval_batches

    dataset = TokenDataset(data_dir, "val")
    block = gpt.config.block_size - virtual_token_count(gpt)  # prefix/prompt tuning's tokens take room
    if len(dataset) <= block:
        return None
    device = next(gpt.parameters()).device
    total, count = 0.0, 0
    with eval_mode(gpt):
        for x, y in iter_eval_batches(dataset, batch_size=8, block_size=block, max_batches=max_batches):
            x, y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
            _, loss = gpt(x, y)
            total += float(loss) * y.numel()
            count += y.numel()
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count, "data": str(data_dir)}


# --- cost bookkeeping ---------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def training_costs(params, timer: StepTimer) -> dict:
    """What a fine-tune cost: trainable parameters (a ParamCount), the optimiser state they need
    (a gradient and AdamW's two fp32 moments each: the part LoRA shrinks, in MiB), this process's
    peak RSS and the median step time."""
    return {
        "trainable_params": params.trainable,
        "total_params": params.total,
        "trainable_percent": params.percent,
        "optimizer_state_mb": params.trainable * 4 * 3 / 2**20,
        "peak_rss_mb": peak_rss_mb(),
        "step_seconds_median": timer.median,
    }


def file_size_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


class StepTimer:
    """Median seconds per optimiser step, skipping the first few (allocator and cache warm-up)."""

    def __init__(self, skip: int = 3) -> None:
        self.skip, self.times, self._t = skip, [], 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def stop(self) -> None:
        self.times.append(time.perf_counter() - self._t)

    @property
    def median(self) -> float | None:
        times = sorted(self.times[self.skip :] or self.times)
        return times[len(times) // 2] if times else None
