"""Preference tuning (`gptlab finetune dpo`): DPO, IPO and conservative DPO on preference pairs.

DPO (Rafailov et al. 2023) trains the policy pi directly on pairs (x, y_w preferred over y_l),
against a frozen reference pi_ref (the start model, usually an SFT run). With the log-ratios
r_w = log pi(y_w|x) - log pi_ref(y_w|x) and r_l likewise (sums over the response tokens, prompt
masked), and z = beta (r_w - r_l):

- ``dpo``:  -log sigmoid(z)
- ``cdpo``: -(1 - eps) log sigmoid(z) - eps log sigmoid(-z), conservative DPO (Mitchell 2023):
  each label is taken to be flipped with probability eps (``--label-smoothing``), so the loss no
  longer pushes the margin to infinity
- ``ipo``:  (d - 1/(2 beta))^2 with d the difference of the *per-token mean* log-ratios (Azar et
  al. 2023, Eq. 17; the length normalisation is trl's, which its authors confirmed): the margin is
  regressed to a finite target instead of maximised.

These equal trl's DPOTrainer losses ``sigmoid`` and ``ipo``; trl 1.x has no label-smoothed
``sigmoid`` any more, and its ``aot`` loss on a batch of one pair is exactly cDPO (tests/finetune/
test_dpo.py checks the three and their gradients against trl).

The reference model is a frozen copy of the start model kept beside the policy (eval mode, no
gradients), run on each batch: the simplest correct choice, at the cost of a second forward pass
and a second copy of the weights (with LoRA, ``--lora-rank``, only the adapters train).

Metrics per epoch (train: over the epoch's batches; val: the held-out pairs): the loss, the implicit
rewards' margin beta (r_w - r_l) (mean), the accuracy (share of pairs with r_w > r_l), and the KL to
the reference: the mean over the val pairs' response tokens (chosen and rejected) of the exact
KL(pi(. | context) || pi_ref(. | context)) between next-token distributions. The contexts are the data's
responses (teacher-forced), not samples of the policy, so this estimates how far the policy moved
where the data is; a sequence-level KL is about this times the response length.

The run is an ordinary gptlab run with the start run's template in model.json (``gptlab chat``,
``generate``, ``eval generation`` use it), best epoch by val loss; metrics.jsonl and results.json.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from gptlab.errors import GptlabError
from gptlab.finetune.common import (
    StepSchedule,
    add_lora,
    check_positive,
    make_optimizer,
    training_option,
)
from gptlab.finetune.loop import EpochRunner, adamw_update
from gptlab.finetune.prefs import (
    PreferenceOptions,
    collate_preferences,
    encode_preference,
    finish_summary,
    response_logps,
    start_preference_training,
)
from gptlab.model.gpt import IGNORE_INDEX
from gptlab.model.lora import count_trainable, remove_lora
from gptlab.model.modes import eval_mode
from gptlab.options import option, positive_float, unit_interval_from_zero
from gptlab.rundir import save_model

LOSSES = ("dpo", "ipo", "cdpo")


def preference_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss: str = "dpo",
    label_smoothing: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses (B,) and the implicit rewards beta * log-ratio of chosen and rejected (B,
    each, detached) from summed response log-probs (B,) of the policy and the reference (see the
    module doc). IPO needs the response token counts, to average the log-ratios per token."""
    if loss not in LOSSES:
        raise GptlabError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise GptlabError("the IPO loss needs the response token counts")
        delta = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        z = beta * (chosen_ratio - rejected_ratio)
        eps = label_smoothing if loss == "cdpo" else 0.0
        losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


@dataclass
class DpoOptions(PreferenceOptions):
    """Everything `finetune_dpo` needs; the CLI flags are built from these fields."""

    lr: float = training_option("lr", 1e-5)
    beta: float = option(
        0.1, "strength of the pull to the reference (DPO's beta, IPO's tau)", type=positive_float
    )
    loss: str = option("dpo", "dpo, ipo, or cdpo (conservative DPO: label-smoothed)", choices=LOSSES)
    label_smoothing: float = option(
        0.0,
        "cdpo: the assumed share of flipped labels, in [0, 0.5)",
        type=unit_interval_from_zero,
        metavar="EPS",
    )

    def check(self) -> None:
        super().check()
        if self.loss not in LOSSES:
            raise GptlabError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_positive("beta", self.beta)
        if not 0 <= self.label_smoothing < 0.5:
            raise GptlabError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing!r}")
        if self.loss == "cdpo" and self.label_smoothing == 0:
            raise GptlabError("cdpo needs --label-smoothing EPS > 0 (with 0 it is plain dpo)")
        if self.loss != "cdpo" and self.label_smoothing:
            raise GptlabError(f"--label-smoothing is cdpo's; the {self.loss} loss does not take it")


@dataclass
class DpoResult:
    out_dir: Path
    history: list[dict]
    summary: dict[str, Any]


class PairStats:
    """Loss, reward margin and accuracy summed over pairs (and KL over tokens) for one pass."""

    def __init__(self) -> None:
        self.loss = self.margin = self.correct = self.kl = 0.0
        self.pairs = self.kl_tokens = 0

    def add(self, losses: torch.Tensor, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> None:
        self.loss += float(losses.detach().sum())
        self.margin += float((chosen_rewards - rejected_rewards).sum())
        self.correct += float((chosen_rewards > rejected_rewards).sum())
        self.pairs += len(losses)

    def pop(self, prefix: str) -> dict:
        """``{prefix}loss``, ``margin``, ``accuracy`` (and ``kl`` if measured), then start over."""
        n = max(1, self.pairs)
        record = {
            f"{prefix}loss": self.loss / n,
            f"{prefix}margin": self.margin / n,
            f"{prefix}accuracy": self.correct / n,
        }
        if self.kl_tokens:
            record[f"{prefix}kl"] = self.kl / self.kl_tokens
        self.__init__()
        return record


@torch.no_grad()
def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """(summed KL(policy || reference) of the next-token distributions at the target positions,
    the number of those positions)."""
    mask = targets != IGNORE_INDEX
    logp = F.log_softmax(logits[mask].float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits[mask].float(), dim=-1)
    return float((logp.exp() * (logp - ref_logp)).sum()), int(mask.sum())


class PairScorer:
    """The policy's and the reference's response log-probs for a collated batch, and the loss."""

    def __init__(self, policy, reference, options: DpoOptions) -> None:
        self.policy, self.reference, self.options = policy, reference, options

    def __call__(self, batch, stats: PairStats | None = None, kl: bool = False) -> torch.Tensor:
        x, y = batch
        logits, _ = self.policy(x)
        with torch.no_grad():
            ref_logits, _ = self.reference(x)
        logps, counts = response_logps(logits, y)
        ref_logps, _ = response_logps(ref_logits, y)
        B = len(x) // 2
        losses, chosen_rewards, rejected_rewards = preference_loss(
            logps[:B], logps[B:], ref_logps[:B], ref_logps[B:], self.options.beta, self.options.loss,
            self.options.label_smoothing, counts[:B], counts[B:],
        )  # fmt: skip
        if stats is not None:
            stats.add(losses, chosen_rewards, rejected_rewards)
            if kl:
                total, tokens = token_kl(logits.detach(), ref_logits, y)
                stats.kl += total
                stats.kl_tokens += tokens
        return losses.mean()


def finetune_dpo(options: DpoOptions, on_epoch: Callable[[dict], None] | None = None) -> DpoResult:
    begun = start_preference_training(options)
    device, out, train, val, start = begun.device, begun.out, begun.train, begun.val, begun.run
    template = start.template
    gpt, tokenizer = start.load(device=str(device))
    reference = copy.deepcopy(gpt).eval().requires_grad_(False)
    add_lora(gpt, options.lora)
    params = count_trainable(gpt)
    block = gpt.config.block_size

    def loader(items, shuffle: bool) -> DataLoader:
        encoded = [encode_preference(ex, tokenizer, template) for ex in items]
        return DataLoader(
            encoded,
            batch_size=options.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(options.seed),
            collate_fn=lambda b: collate_preferences(b, tokenizer.eot_id, block),
        )

    train_loader, val_loader = loader(train, True), loader(val, False)
    scorer = PairScorer(gpt, reference, options)
    train_stats, val_stats = PairStats(), PairStats()

    @torch.no_grad()
    def evaluate() -> dict:
        with eval_mode(gpt):
            for x, y in val_loader:
                scorer((x.to(device), y.to(device)), val_stats, kl=True)
        return val_stats.pop("val_")

    summary: dict[str, Any] = {
        "base_model": str(Path(options.model).resolve()),
        "data": str(options.data),
        "template": template,
        "splits": {"train": len(train), "val": len(val)},
        "before": evaluate(),
    }
    optimizer = make_optimizer(gpt, options.lr, options.weight_decay, device)
    schedule = StepSchedule(
        optimizer, options.lr, options.epochs * len(train_loader), options.warmup_fraction
    )
    extra = {
        "finetune": "dpo",
        "template": template,
        "base_model": summary["base_model"],
        "preference": {
            "loss": options.loss,
            "beta": options.beta,
            "label_smoothing": options.label_smoothing,
        },
    }
    for key in ("input_field", "output_field"):  # an input -> output run stays one
        if key in start.extra:
            extra[key] = start.extra[key]

    def save(epoch: int) -> None:
        plain = remove_lora(copy.deepcopy(gpt), merge=True) if options.lora.enabled else gpt
        save_model(out, plain, tokenizer, extra=extra | {"best_epoch": epoch})

    trained = EpochRunner(
        model=gpt,
        options=options,
        batches=lambda step: train_loader,
        update=adamw_update(
            gpt, optimizer, lambda batch: (None, scorer(batch, train_stats)), options.grad_clip
        ),
        schedule=schedule,
        device=device,
        on_batch=lambda batch, output, loss: None,
        end_epoch=lambda: train_stats.pop("train_") | evaluate(),
        score=lambda record: -record["val_loss"],
        save=save,
        started=begun.started,
        on_epoch=on_epoch,
    ).run(out / "metrics.jsonl")

    return DpoResult(out, trained.history, finish_summary(summary, trained, params, options, begun))
