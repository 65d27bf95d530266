"""What classification and instruction fine-tuning share: the optimiser and schedule, LoRA set-up,
the "forgetting" measurement, memory and time bookkeeping.

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
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.model.lora import DEFAULT_TARGETS, apply_lora
from gptlab.model.modes import eval_mode
from gptlab.train.optim import make_adamw, set_lr
from gptlab.train.schedule import LRSchedule

EVAL_MAX_BATCHES = 20  # windows of the pretraining val split scored for the forgetting measure


@dataclass
class LoraOptions:
    """LoRA on the GPT's Linear layers (rank 0 = no LoRA, train the chosen parameters directly)."""

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS

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
    block = gpt.config.block_size
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


def optimizer_step(model: nn.Module, optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """Backward, clip the trainable parameters' gradient norm (0: no clipping), AdamW step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()


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
