"""A Bradley-Terry reward model (`gptlab finetune reward`) and best-of-N sampling with it.

The reward model is the GPT with a scalar head (Linear n_embd -> 1) on the final-normed hidden
state of the last token of prompt + response + <|endoftext|> (the only position that has seen it
all; the language-model head is unused). Trained on preference pairs with the Bradley-Terry loss
-log sigmoid(r(x, y_w) - r(x, y_l)) (Ouyang et al. 2022, Eq. 1): only differences of rewards are
learned, so a reward's zero means nothing, its ordering everything. Prompts are formatted with the
start run's template, as in gptlab.finetune.prefs; the val pairs give accuracy and mean margin.

The run folder is an ordinary gptlab run (model.json with ``"finetune": "reward"`` and the
template, model.safetensors, tokenizer.json) plus ``reward_head.safetensors``.

Best-of-N (`gptlab generate --best-of N --reward RUN`): sample N completions of one prompt and keep
the one the reward model scores highest: rejection sampling, the simplest way to turn a reward
model into a better policy without training (Nakano et al. 2021; Stiennon et al. 2020). It costs
N generations, and the policy's KL from the sampler is at most log N - (N-1)/N.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from gptlab.data.tasks import encode_prompt
from gptlab.errors import GptlabError
from gptlab.finetune.common import (
    StepSchedule,
    add_lora,
    make_optimizer,
)
from gptlab.finetune.loop import EpochRunner, adamw_update
from gptlab.finetune.prefs import (
    PreferenceExample,
    PreferenceOptions,
    encode_response,
    finish_summary,
    start_preference_training,
)
from gptlab.generate import Sampler, generate
from gptlab.io import load_safetensors, save_safetensors
from gptlab.model.gpt import GPT, INIT_STD
from gptlab.model.lora import count_trainable, remove_lora
from gptlab.model.modes import eval_mode
from gptlab.run import Run
from gptlab.rundir import load_model, save_model

HEAD_FILE = "reward_head.safetensors"


class RewardModel(nn.Module):
    """``gpt`` + ``head`` (Linear n_embd -> 1): one scalar per right-padded sequence."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt
        weight = gpt.transformer.wte.weight
        self.head = nn.Linear(gpt.config.n_embd, 1, device=weight.device, dtype=weight.dtype)
        nn.init.normal_(self.head.weight, mean=0.0, std=INIT_STD)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx (B, T) right-padded, lengths (B,) real tokens -> rewards (B,)."""
        x = self.gpt.transformer.ln_f(self.gpt.hidden_states(idx)[-1])  # (B, T, C)
        last = x[torch.arange(len(idx), device=idx.device), lengths - 1]  # (B, C)
        return self.head(last).squeeze(-1).float()


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean -log sigmoid(r_chosen - r_rejected) over the pairs."""
    return -F.logsigmoid(chosen - rejected).mean()


def pad_sequences(
    rows: Sequence[Sequence[int]], pad_id: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences -> (B, T) right-padded with ``pad_id`` and lengths (B,); a sequence longer than the
    context keeps its end (the response and its <|endoftext|>, which the head reads)."""
    rows = [list(r)[-block_size:] for r in rows]
    idx = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return idx, torch.tensor([len(r) for r in rows])


@dataclass
class LoadedReward:
    """A reward run, ready to score: ``model`` in eval mode, its tokenizer and template."""

    model: RewardModel
    tokenizer: Any
    template: str

    @torch.no_grad()
    def score_ids(self, rows: Sequence[Sequence[int]], batch_size: int = 16) -> list[float]:
        """Rewards of token sequences (prompt + response + <|endoftext|>)."""
        device = next(self.model.parameters()).device
        block = self.model.gpt.config.block_size
        out: list[float] = []
        with eval_mode(self.model):
            for i in range(0, len(rows), batch_size):
                idx, lengths = pad_sequences(rows[i : i + batch_size], self.tokenizer.eot_id, block)
                out += self.model(idx.to(device), lengths.to(device)).tolist()
        return out

    def score(self, prompts: Sequence[PreferenceExample], responses: Sequence[str]) -> list[float]:
        """Rewards of responses to prompts (their ``prompt``/``input``, formatted with the template)."""
        rows = [
            encode_response(encode_prompt(p.instruction, self.tokenizer, self.template), r, self.tokenizer)[0]
            for p, r in zip(prompts, responses)
        ]
        return self.score_ids(rows)


def save_reward(out: Path, model: RewardModel, tokenizer, extra: dict) -> None:
    save_model(out, model.gpt, tokenizer, extra=extra)
    save_safetensors(
        {k: v.detach().contiguous() for k, v in model.head.state_dict().items()}, out / HEAD_FILE
    )


def load_reward(path: str | Path, device: str = "cpu") -> LoadedReward:
    """The reward run at ``path`` (GptlabError if it is not one)."""
    run = Run.open(path)
    if run.extra.get("finetune") != "reward" or not (Path(path) / HEAD_FILE).is_file():
        raise GptlabError(f"{path} is not a reward model run (make one with `gptlab finetune reward`)")
    gpt, tokenizer = load_model(path, device=device)
    model = RewardModel(gpt)
    state = load_safetensors(Path(path) / HEAD_FILE, device=str(device))
    if set(state) != {"weight", "bias"} or tuple(state["weight"].shape) != (1, gpt.config.n_embd):
        raise GptlabError(
            f"{Path(path) / HEAD_FILE}: not a reward head for this model (weight (1, n_embd) and bias)"
        )
    model.head.load_state_dict(state)
    return LoadedReward(model.eval(), tokenizer, run.template)


@dataclass
class RewardOptions(PreferenceOptions):
    """Everything `finetune_reward` needs (the shared preference-training options); CLI flags from the fields."""


@dataclass
class RewardResult:
    out_dir: Path
    history: list[dict]
    summary: dict[str, Any]


def finetune_reward(options: RewardOptions, on_epoch: Callable[[dict], None] | None = None) -> RewardResult:
    begun = start_preference_training(options)
    device, out, train, val, start = begun.device, begun.out, begun.train, begun.val, begun.run
    gpt, tokenizer = start.load(device=str(device))
    if tokenizer.eot_id is None:
        raise GptlabError(
            f"{options.model}: the tokenizer has no <|endoftext|> token, which ends every response"
        )
    model = RewardModel(gpt)
    add_lora(gpt, options.lora)
    scorer = LoadedReward(model, tokenizer, start.template)
    block = gpt.config.block_size

    def encode(ex: PreferenceExample) -> tuple[list[int], list[int]]:
        prompt = encode_prompt(ex.instruction, tokenizer, scorer.template)
        return encode_response(prompt, ex.chosen, tokenizer)[0], encode_response(
            prompt, ex.rejected, tokenizer
        )[0]

    def collate(batch):
        idx, lengths = pad_sequences([c for c, _ in batch] + [r for _, r in batch], tokenizer.eot_id, block)
        return idx, lengths

    train_loader = DataLoader(
        [encode(ex) for ex in train], batch_size=options.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(options.seed), collate_fn=collate,
    )  # fmt: skip
    val_rows = [encode(ex) for ex in val]
    totals = {"loss": 0.0, "correct": 0.0, "pairs": 0}

    def forward(batch):
        rewards = model(*batch)
        B = len(rewards) // 2
        loss = bradley_terry_loss(rewards[:B], rewards[B:])
        totals["loss"] += loss.item() * B
        totals["correct"] += float((rewards[:B] > rewards[B:]).sum())
        totals["pairs"] += B
        return None, loss

    def evaluate() -> dict:
        chosen = torch.tensor(scorer.score_ids([c for c, _ in val_rows]))
        rejected = torch.tensor(scorer.score_ids([r for _, r in val_rows]))
        return {
            "val_loss": float(bradley_terry_loss(chosen, rejected)),
            "val_accuracy": float((chosen > rejected).float().mean()),
            "val_margin": float((chosen - rejected).mean()),
        }

    def end_epoch() -> dict:
        n = max(1, totals["pairs"])
        record = {"train_loss": totals["loss"] / n, "train_accuracy": totals["correct"] / n}
        totals.update(loss=0.0, correct=0.0, pairs=0)
        return record | evaluate()

    extra = {
        "finetune": "reward",
        "template": scorer.template,
        "base_model": str(Path(options.model).resolve()),
    }

    def save(epoch: int) -> None:
        plain = model
        if options.lora.enabled:
            plain = copy.deepcopy(model)
            remove_lora(plain.gpt, merge=True)
        save_reward(out, plain, tokenizer, extra | {"best_epoch": epoch})

    params = count_trainable(model)
    optimizer = make_optimizer(model, options.lr, options.weight_decay, device)
    summary: dict[str, Any] = {
        "base_model": extra["base_model"],
        "data": str(options.data),
        "template": scorer.template,
        "splits": {"train": len(train), "val": len(val)},
        "before": evaluate(),
    }
    trained = EpochRunner(
        model=model,
        options=options,
        batches=lambda step: train_loader,
        update=adamw_update(model, optimizer, forward, options.grad_clip),
        schedule=StepSchedule(
            optimizer, options.lr, options.epochs * len(train_loader), options.warmup_fraction
        ),
        device=device,
        on_batch=lambda batch, output, loss: None,
        end_epoch=end_epoch,
        score=lambda record: -record["val_loss"],
        save=save,
        started=begun.started,
        on_epoch=on_epoch,
    ).run(out / "metrics.jsonl")
    return RewardResult(out, trained.history, finish_summary(summary, trained, params, options, begun))


# --- best-of-N ----------------------------------------------------------------------------------


@torch.no_grad()
def best_of_n(
    gpt: GPT,
    tokenizer,
    prompt_ids: Sequence[int],
    reward: LoadedReward,
    n: int,
    max_new_tokens: int,
    sampler: Sampler,
    seed: int | None = None,
) -> list[dict]:
    """N sampled completions of ``prompt_ids``, each ``{"completion", "reward", "best"}`` (the
    highest reward is best; ties go to the first). Each completion is scored as prompt +
    completion + <|endoftext|>, the form the reward model was trained on."""
    if n < 1:
        raise GptlabError(f"best-of-N needs N >= 1, got {n}")
    if sampler.greedy and n > 1:
        raise GptlabError(
            "best-of-N with greedy decoding gives N copies of one completion: set --temperature > 0"
        )
    if reward.tokenizer.to_dict() != tokenizer.to_dict():
        raise GptlabError("the reward model's tokenizer is not the model's: train it from the same base run")
    eot = tokenizer.eot_id
    prompt = list(prompt_ids)[-max(1, gpt.config.block_size - max_new_tokens) :]
    device = next(gpt.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    rows = generate(gpt, [prompt] * n, max_new_tokens, sampler, eos_id=eot, generator=generator)
    completions = []
    for row in rows:
        tokens = row[len(prompt) :]
        completions.append(tokens[: tokens.index(eot)] if eot is not None and eot in tokens else tokens)
    rewards = reward.score_ids([prompt + c + ([eot] if eot is not None else []) for c in completions])
    best = max(range(n), key=lambda i: rewards[i])
    return [
        {"completion": tokenizer.decode(c), "reward": r, "best": i == best}
        for i, (c, r) in enumerate(zip(completions, rewards))
    ]
