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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gptlab.data.tasks import (
    InstructionExample,
    collate_instructions,
    encode_prompt,
    read_json_records,
)
from gptlab.errors import GptlabError
from gptlab.model.gpt import IGNORE_INDEX
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
