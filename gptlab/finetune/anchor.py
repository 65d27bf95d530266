"""Penalties that anchor a later fine-tune to the weights it started from: EWC and L2-to-start.

    EWC (Kirkpatrick et al. 2017):  loss + lambda/2 * sum_i F_i (w_i - w*_i)^2
    L2-to-start:                     loss + lambda/2 * sum_i     (w_i - w*_i)^2

w* are the GPT's weights at the start of the fine-tune (the earlier task's solution) and F the
diagonal of the Fisher information of the earlier task at w*, estimated as the empirical Fisher:
the mean over ``--ewc-examples`` earlier-task examples (one example per backward pass, so that
the squares are of per-example gradients, not of a batch mean) of the squared gradient of that
example's loss at its true answer. The earlier task is the ``--after`` run's last step: a
classifier's cross-entropy with its own head (loaded with the run), an instruct step's
next-token loss on its examples; with no chain, next-token loss on windows of the base's
pretraining train split. Only the GPT's parameters are anchored (a classifier's head is new in
every classification fine-tune); a parameter whose shape changed (an embedding grown for the chat
tokens) is left free. The Fisher is computed with the global RNG forked, so that a run with
lambda = 0 trains exactly as a run without the flag.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from gptlab.errors import GptlabError


class AnchorPenalty:
    """``penalty()``: lambda/2 * sum weight * (w - w_start)^2 over ``params`` (name -> parameter)
    as they are now; ``weights`` None for L2-to-start, the diagonal Fisher for EWC."""

    def __init__(
        self, params: dict[str, nn.Parameter], lam: float, weights: dict[str, torch.Tensor] | None = None
    ) -> None:
        self.lam = lam
        self.params = {
            n: p
            for n, p in params.items()
            if weights is None or (n in weights and weights[n].shape == p.shape)
        }
        self.start = {n: p.detach().clone() for n, p in self.params.items()}
        self.weights = (
            None if weights is None else {n: weights[n].to(p.device) for n, p in self.params.items()}
        )

    def __call__(self) -> torch.Tensor:
        total = None
        for name, p in self.params.items():
            square = (p - self.start[name]).pow(2)
            term = (square if self.weights is None else self.weights[name] * square).sum()
            total = term if total is None else total + term
        if total is None:
            raise GptlabError("the penalty anchors no parameter (none matches the earlier task's)")
        return 0.5 * self.lam * total


def diagonal_fisher(
    params: dict[str, nn.Parameter], example_losses: Iterable[Callable[[], torch.Tensor]]
) -> tuple[dict[str, torch.Tensor], int]:
    """(mean squared gradient of each example's loss per parameter, examples used)."""
    names = [n for n, p in params.items() if p.requires_grad]
    tensors = [params[n] for n in names]
    fisher = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    count = 0
    for loss_fn in example_losses:
        grads = torch.autograd.grad(loss_fn(), tensors, allow_unused=True)
        for name, g in zip(names, grads):
            if g is not None:
                fisher[name] += g.detach().float().pow(2)
        count += 1
    if not count:
        raise GptlabError("EWC: the earlier task has no examples to estimate the Fisher on")
    return {n: f / count for n, f in fisher.items()}, count


def earlier_task_fisher(start, n_examples: int, seed: int, device) -> tuple[dict[str, torch.Tensor], dict]:
    """The diagonal Fisher of the earlier task (see the module docstring) and what it was taken on."""
    from gptlab.run import Run

    run = Run.open(start.path)
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        if start.chain and start.chain[-1].get("finetune") == "classify":
            losses, gpt, source = _classifier_losses(run, start.chain[-1], n_examples, rng, device)
        elif start.chain:
            losses, gpt, source = _instruct_losses(run, start.chain[-1], n_examples, rng, device)
        else:
            losses, gpt, source = _pretraining_losses(run, start, n_examples, seed, device)
        fisher, count = diagonal_fisher(dict(gpt.named_parameters()), losses)
    return fisher, {"examples": count, "source": source}


def _sample(items: list, n: int, rng: random.Random) -> list:
    order = list(range(len(items)))
    rng.shuffle(order)
    return [items[i] for i in order[:n]]


def _classifier_losses(run, step: dict, n: int, rng, device):
    import torch as t

    from gptlab.data.tasks import load_classification

    clf = run.load_classifier(device=str(device))
    columns = step.get("columns") or {}
    data = load_classification(
        step["data"],
        columns.get("text", "text"),
        columns.get("label", "label"),
        labels=clf.label_names,
        header=columns.get("header"),
    )
    chosen = _sample(list(zip(data.texts, data.labels)), n, rng)

    def loss_of(text: str, label: int):
        ids = clf.encode([text])[0]
        idx = t.tensor([ids], device=device)
        return lambda: clf.model(idx, t.tensor([len(ids)], device=device), t.tensor([label], device=device))[
            1
        ]

    return [loss_of(text, label) for text, label in chosen], clf.model.gpt, f"{step['data']} (classifier)"


def _instruct_losses(run, step: dict, n: int, rng, device):
    from gptlab.data.tasks import collate_instructions
    from gptlab.finetune.continual import step_items

    gpt, tokenizer = run.load(device=str(device))
    items, source = step_items(step, tokenizer)
    chosen = _sample(items, n, rng)

    def loss_of(item):
        x, y = collate_instructions([item], tokenizer.eot_id, gpt.config.block_size, mask_prompt=True)
        return lambda: gpt(x.to(device), y.to(device))[1]

    return [loss_of(item) for item in chosen], gpt, source


def _pretraining_losses(run, start, n: int, seed: int, device):
    if start.pretraining_data is None:
        raise GptlabError(
            f"EWC needs the earlier task: give --after RUN, or a --model whose pretraining data is there "
            f"({start.path} has none)"
        )
    from gptlab.data.shards import TokenDataset, sample_windows

    gpt, _ = run.load(device=str(device))
    tokens = TokenDataset(start.pretraining_data, "train").tokens
    windows = sample_windows(tokens, n, gpt.config.block_size + 1, seed)

    def loss_of(window):
        row = torch.tensor([window], device=device)
        return lambda: gpt(row[:, :-1], row[:, 1:])[1]

    return [loss_of(w) for w in windows], gpt, f"{start.pretraining_data} (pretraining train windows)"


def make_penalty(options, start, gpt: nn.Module, device) -> tuple[AnchorPenalty | None, dict | None]:
    """The penalty ``options`` ask for (``ewc`` or ``l2_start``) on ``gpt``'s trainable weights as
    they are now, and its record for results.json; (None, None) when neither is given."""
    if options.ewc is None and options.l2_start is None:
        return None, None
    params = {n: p for n, p in gpt.named_parameters() if p.requires_grad}
    if not params:
        raise GptlabError("--ewc/--l2-start: no GPT weight trains (--trainable head?): nothing to anchor")
    if options.l2_start is not None:
        penalty = AnchorPenalty(params, options.l2_start)
        return penalty, {"kind": "l2_start", "lambda": options.l2_start, "anchored": len(penalty.params)}
    fisher, info = earlier_task_fisher(start, options.ewc_examples, options.seed, device)
    penalty = AnchorPenalty(params, options.ewc, fisher)
    return penalty, {"kind": "ewc", "lambda": options.ewc, "anchored": len(penalty.params)} | info


def with_penalty(forward: Callable, penalty: AnchorPenalty | None) -> Callable:
    """``forward(batch) -> (output, loss)`` with the penalty added to the loss (None: as is)."""
    if penalty is None:
        return forward

    def penalised(batch):
        output, loss = forward(batch)
        return output, loss + penalty()

    return penalised
