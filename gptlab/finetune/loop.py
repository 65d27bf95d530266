"""The epoch runner both fine-tunes (classify, instruct) train with.

`EpochRunner.run` owns what the two loops share: epochs over the task's batches, the learning
rate of each step, one weight update per batch (`adamw_update`, or `dp_sgd_update` for DP-SGD),
step timing, the progress bar, the ``--max-minutes`` deadline, and after each epoch the task's
evaluation, the best-checkpoint tracking (the task saves, the runner decides when) and one
``metrics.jsonl`` line per epoch. The task supplies what differs: its batches, its forward pass
and loss, the train metrics it gathers from the batches and its val metrics.

A mixture-of-experts model (``mlp = "moe"``) fine-tunes as it pretrains (gptlab.train.trainer):
the update adds its load-balancing loss (gptlab.model.moe.aux_loss, ``moe_aux_loss`` times the
layers' balance losses) to the task's loss before backward, so the routers keep spreading the
tokens; the loss the task and its metrics see stays the task's own. Each epoch's record gains
the routers' ``moe_aux_loss`` and ``expert_fraction`` (gptlab.model.moe.RouterStats).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn

from gptlab.finetune.common import StepSchedule, StepTimer
from gptlab.model.moe import RouterStats, aux_loss, tokens_per_expert

Batch = tuple[torch.Tensor, ...]
# one update: the batch (on the model's device) -> (the task's output for its metrics, mean loss)
Update = Callable[[Batch], tuple[Any, torch.Tensor]]


def optimizer_step(model: nn.Module, optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """Backward, clip the trainable parameters' gradient norm (0: no clipping), AdamW step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()


def adamw_update(
    model: nn.Module, optimizer, forward: Callable[[Batch], tuple[Any, torch.Tensor]], grad_clip: float
) -> Update:
    """The ordinary update: ``forward(batch) -> (output, loss)``, backward of the loss plus a
    mixture of experts' load-balancing loss (module doc; 0 for a dense model), clip, AdamW.
    Returns the output and the task's loss."""

    def update(batch: Batch) -> tuple[Any, torch.Tensor]:
        output, loss = forward(batch)
        optimizer_step(model, optimizer, loss + aux_loss(model), grad_clip)
        return output, loss

    return update


def dp_sgd_update(module: nn.Module, sample_loss, plan, optimizer, chunk_size: int) -> Update:
    """A DP-SGD update (gptlab.train.dp): the privatised gradient of ``plan`` (per-example
    ``sample_loss`` of ``module``, clipped, noised) into .grad, then AdamW. The usual global-norm
    clip is not applied: per-example clipping bounds the update already. The output is the
    per-example aux outputs (None for an empty Poisson batch) and the loss the sampled examples'
    mean, for train metrics (which are not private)."""
    from gptlab.train.dp import dp_sgd_gradients, set_gradients

    def update(batch: Batch) -> tuple[Any, torch.Tensor]:
        grads, stats = dp_sgd_gradients(
            module,
            sample_loss,
            batch,
            plan.max_grad_norm,
            plan.noise_multiplier,
            plan.expected_batch_size,
            chunk_size,
        )
        optimizer.zero_grad(set_to_none=True)
        set_gradients(module, grads)
        optimizer.step()
        return stats.aux, torch.tensor(stats.loss_sum / max(1, stats.batch_size))

    return update


class EpochOptions(Protocol):
    """What the runner reads of a fine-tune's options (ClassifyOptions, InstructOptions)."""

    epochs: int
    max_minutes: float | None  # stop after the step that passes it (None: no limit)
    progress: bool  # a tqdm bar per epoch


@dataclass
class EpochsResult:
    history: list[dict]  # the metrics.jsonl records
    best: dict  # the record of the best epoch (the one whose checkpoint was saved last)
    steps: int
    stopped_early: bool  # the deadline ended training mid-epoch
    timer: StepTimer


@dataclass
class EpochRunner:
    """Train ``model`` for ``options.epochs``; see the module doc for who does what.

    ``batches(step)`` gives the training batches of the epoch starting at global step ``step``
    (DP-SGD draws them as a function of the step); ``on_batch(batch, output, loss)`` gathers the
    task's train metrics; ``end_epoch()`` returns the epoch record's metric fields (and resets
    what ``on_batch`` gathered); ``score(record)`` ranks records (higher is better; the first epoch
    is always best so far); ``save(epoch)`` writes the best checkpoint."""

    model: nn.Module
    options: EpochOptions
    batches: Callable[[int], Iterable[Batch]]
    update: Update
    schedule: StepSchedule
    device: torch.device
    on_batch: Callable[[Batch, Any, torch.Tensor], None]
    end_epoch: Callable[[], dict]
    score: Callable[[dict], Any]
    save: Callable[[int], None]
    started: float = field(default_factory=time.time)  # the run's start: record seconds and deadline
    on_epoch: Callable[[dict], None] | None = None

    def run(self, metrics_path: Path) -> EpochsResult:
        """Train, writing one record per epoch to ``metrics_path`` as it goes."""
        history: list[dict] = []
        timer = StepTimer()
        best, best_score, step, stopped_early = None, None, 0, False
        router = RouterStats()  # a mixture of experts' routing over the epoch (module doc)
        minutes = self.options.max_minutes
        deadline = self.started + minutes * 60 if minutes else None
        with metrics_path.open("w", encoding="utf-8") as metrics_file:
            for epoch in range(1, self.options.epochs + 1):
                self.model.train()
                batches = self._progress(self.batches(step), epoch)
                for batch in batches:
                    timer.start()
                    self.schedule.set(step)
                    batch = tuple(t.to(self.device) for t in batch)
                    output, loss = self.update(batch)
                    timer.stop()
                    step += 1
                    router.add(aux_loss(self.model), tokens_per_expert(self.model))  # the update's forward
                    self.on_batch(batch, output, loss)
                    if hasattr(batches, "set_postfix"):
                        batches.set_postfix(loss=f"{float(loss):.4f}")
                    if deadline and time.time() > deadline:
                        stopped_early = True
                        break
                record = {"epoch": epoch, "step": step, "seconds": round(time.time() - self.started, 2)}
                record |= router.record() | self.end_epoch()
                score = self.score(record)
                if best_score is None or score > best_score:
                    best_score = score
                    self.save(epoch)
                    record["best"] = True
                    best = record
                history.append(record)
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                if self.on_epoch:
                    self.on_epoch(record)
                if stopped_early:
                    break
        return EpochsResult(history, best, step, stopped_early, timer)

    def _progress(self, batches: Iterable[Batch], epoch: int) -> Iterable[Batch]:
        if not self.options.progress:
            return batches
        from tqdm import tqdm

        return tqdm(batches, desc=f"epoch {epoch}/{self.options.epochs}", leave=False, dynamic_ncols=True)
