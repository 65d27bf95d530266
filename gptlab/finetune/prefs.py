"""Preference data for DPO and reward models: rows, their tokens, and the log-probabilities DPO needs.

A preference file is JSONL (or a JSON list) of ``{"prompt", "chosen", "rejected"}`` objects, with
an optional ``"input"`` (an Alpaca input). The prompt is formatted with the run's instruction
template (gptlab.data.tasks: ``alpaca``, ``chat`` or a prompt string with ``{input}``), exactly as
`gptlab finetune instruct` formats a training example, and each response is followed by
<|endoftext|>, so "how likely is this response" includes "and then stopping".

`collate_preferences` puts a batch of B pairs into one (2B, T) batch, the B chosen rows first, then
the B rejected rows, with the prompt and the padding masked out of the targets (-100): `response_logps`
then gives each row's summed log-probability of its response tokens and their count.

`build_preferences` makes a real preference set from an instruction set (`gptlab data prefs`):
the reference response is *chosen* and the model's own greedy response *rejected* (the recipe of
the DPO chapter of Raschka's "Build a Large Language Model (From Scratch)"; there the rejected
response is a rewritten one, here it is the model's, which is what it should move away from).
Examples whose generation equals the reference are dropped: they carry no preference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gptlab.data.tasks import (
    InstructionExample,
    collate_instructions,
    encode_prompt,
    read_json_records,
)
from gptlab.errors import GptlabError
from gptlab.finetune.common import (
    LoraOptions,
    check_positive,
    lora_option,
    training_costs,
    training_option,
)
from gptlab.io import atomic_write_json
from gptlab.model.gpt import IGNORE_INDEX
from gptlab.model.modes import resolve_device
from gptlab.options import option
from gptlab.run import Run
from gptlab.tokenizers.base import EOT

FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferenceExample:
    prompt: str  # the instruction
    chosen: str  # the preferred response
    rejected: str  # the dispreferred response
    input: str = ""  # an Alpaca input, if any

    @property
    def instruction(self) -> InstructionExample:
        """The prompt as an instruction example (its template formats it like a training example)."""
        return InstructionExample(self.prompt, self.input, "")


def load_preferences(path: str | os.PathLike) -> list[PreferenceExample]:
    """The rows of a JSONL / JSON-list preference file; GptlabError naming the line of a bad row
    (not an object, a field missing or not a string, an empty prompt, chosen == rejected)."""
    path = Path(path)
    rows = []
    for line, record in read_json_records(path):
        where = f"{path} line {line}"
        if not isinstance(record, dict):
            raise GptlabError(
                f"{where}: expected an object with {', '.join(FIELDS)}, got {type(record).__name__}"
            )
        for name in (*FIELDS, "input"):
            if name not in record:
                if name == "input":
                    continue
                raise GptlabError(f"{where}: missing field {name!r}")
            if not isinstance(record[name], str):
                raise GptlabError(
                    f"{where}: field {name!r} must be a string, got {type(record[name]).__name__}"
                )
        if not record["prompt"].strip():
            raise GptlabError(f"{where}: empty text in field 'prompt'")
        if record["chosen"].strip() == record["rejected"].strip():
            raise GptlabError(
                f"{where}: 'chosen' and 'rejected' are the same text, which states no preference"
            )
        rows.append(
            PreferenceExample(record["prompt"], record["chosen"], record["rejected"], record.get("input", ""))
        )
    if not rows:
        raise GptlabError(f"{path} has no preference rows")
    return rows


def encode_response(prompt_ids: list[int], response: str, tokenizer) -> tuple[list[int], int]:
    """(prompt + response + <|endoftext|> ids, prompt length): the unit every preference row scores."""
    eot = tokenizer.eot_id
    if eot is None:
        raise GptlabError(f"the tokenizer has no {EOT} token, which ends every response")
    return prompt_ids + tokenizer.encode(response) + [eot], len(prompt_ids)


def encode_preference(ex: PreferenceExample, tokenizer, template: str) -> tuple[tuple, tuple]:
    """((chosen ids, prompt length), (rejected ids, prompt length)) for `collate_preferences`."""
    prompt = encode_prompt(ex.instruction, tokenizer, template)
    return encode_response(prompt, ex.chosen, tokenizer), encode_response(prompt, ex.rejected, tokenizer)


def collate_preferences(
    batch: Sequence[tuple[tuple, tuple]], pad_id: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """B encoded pairs -> inputs and targets (2B, T): chosen rows 0..B-1, rejected rows B..2B-1;
    only response tokens (and their <|endoftext|>) are targets. Rows longer than the context
    keep their end (the response), as instruction tuning's masked rows do."""
    rows = [chosen for chosen, _ in batch] + [rejected for _, rejected in batch]
    return collate_instructions(rows, pad_id, block_size, mask_prompt=True)


def response_logps(
    logits: torch.Tensor, targets: torch.Tensor, average: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (N, T, V), targets (N, T) with -100 off the response -> (summed log-probability of
    each row's response tokens (N,), their count (N,)); ``average``: the mean instead of the sum."""
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    token_logps = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    total = (token_logps * mask).sum(dim=-1)
    count = mask.sum(dim=-1)
    return (total / count.clamp(min=1) if average else total), count


def build_preferences(
    gpt, tokenizer, examples: Sequence[InstructionExample], template: str, max_new_tokens: int = 128
) -> list[dict]:
    """Preference rows from instruction examples: chosen = the reference output, rejected = ``gpt``'s
    greedy response (see the module doc). Rows are dicts ready for JSONL."""
    from gptlab.finetune.instruct import generate_responses

    generated = generate_responses(gpt, tokenizer, examples, template, max_new_tokens)
    rows = []
    for ex, response in zip(examples, generated):
        if response.strip() == ex.output.strip():
            continue
        row = {"prompt": ex.instruction, "chosen": ex.output, "rejected": response}
        if ex.input:
            row["input"] = ex.input
        rows.append(row)
    return rows


# --- what `finetune dpo` and `finetune reward` share -------------------------------------------------


@dataclass
class PreferenceOptions:
    """The options both preference trainings take (DpoOptions adds the loss's); CLI flags from the fields."""

    model: str = training_option("model")  # the start model, usually an instruct run
    data: str = option(
        help='preference pairs: JSONL or JSON list of {"prompt", "chosen", "rejected"}', metavar="FILE"
    )
    out: str = training_option("out")
    val_fraction: float = training_option("val_fraction", 0.1)
    seed: int = training_option("seed", 0)
    lora: LoraOptions = lora_option()
    epochs: int = training_option("epochs", 2)
    batch_size: int = training_option("batch_size", 8)
    lr: float = training_option("lr", 1e-4)
    weight_decay: float = training_option("weight_decay", 0.0)
    warmup_fraction: float = 0.1
    grad_clip: float = training_option("grad_clip", 1.0)
    max_minutes: float | None = training_option("max_minutes", None)
    device: str = training_option("device", "auto")
    progress: bool = training_option("progress", True)

    def check(self) -> None:
        for name in ("epochs", "batch_size", "lr"):
            check_positive(name, getattr(self, name))
        check_positive("grad_clip", self.grad_clip, allow_zero=True)
        if not 0 < self.val_fraction < 1:
            raise GptlabError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")


@dataclass
class PreferenceStart:
    """A preference training, set up: its device, output folder, split pairs and start run."""

    device: Any
    out: Path
    train: list[PreferenceExample]
    val: list[PreferenceExample]
    run: Run
    started: float


def start_preference_training(options: PreferenceOptions) -> PreferenceStart:
    """Check the options, seed, read and split the pairs, open the start run (before any training)."""
    import torch

    from gptlab.data.tasks import split_examples

    options.check()
    started = time.time()
    torch.manual_seed(options.seed)
    pairs = load_preferences(options.data)
    train, val, _ = split_examples(pairs, options.val_fraction, 0.0, options.seed)
    if not train or not val:
        raise GptlabError(
            f"{options.data}: {len(pairs)} pairs are too few for a train/val split of {options.val_fraction}"
        )
    run = Run.open(options.model)
    out = Path(options.out)  # claimed by the caller (gptlab.run.Run.create)
    out.mkdir(parents=True, exist_ok=True)
    return PreferenceStart(resolve_device(options.device), out, train, val, run, started)


def finish_summary(
    summary: dict, trained, params, options: PreferenceOptions, start: PreferenceStart
) -> dict:
    """The summary's closing fields (best epoch and its val metrics, time, costs, options), also
    written to results.json."""
    summary["best_epoch"] = trained.best["epoch"]
    summary["best"] = {k: v for k, v in trained.best.items() if k.startswith("val_")}
    summary["stopped_early"] = trained.stopped_early
    summary["train_seconds"] = round(time.time() - start.started, 2)
    summary["costs"] = training_costs(params, trained.timer)
    summary["options"] = asdict(options) | {"lora": options.lora.to_dict()}
    atomic_write_json(start.out / "results.json", summary)
    return summary
