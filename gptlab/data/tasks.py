"""Task datasets for fine-tuning: text classification and instruction following.

Classification (e.g. SMS spam):

- `load_classification` reads TSV, CSV, JSONL or a JSON list. Columns are named (files with a
  header row, JSON keys) or 0-based positions (files without a header, such as
  ``label<TAB>text`` in sms-spam.tsv: ``label_column=0, text_column=1``). TSV is split on tabs
  only (quotes are ordinary characters, as in most TSV corpora); CSV follows RFC 4180 quoting.
- `stratified_split` keeps each class's share in train/val/test (a plain random split of a
  13%-spam corpus can leave a small test set with very few spam messages); `balance` under- or
  oversamples the training split; `class_weights` weighs the loss instead.
- `ClassificationDataset` tokenizes and truncates to ``max_length``; `collate_classification`
  pads a batch on the right (to its longest text, or to a fixed length) and returns the lengths,
  which the classifier uses to find the last real token (gptlab.model.heads).

Instruction following (Alpaca format: instruction, optional input, output):

- `load_instructions` reads a JSON list or JSONL.
- Two prompt templates: ``"alpaca"`` (the Stanford Alpaca text template, plain text) and
  ``"chat"`` (turns marked by the special tokens ``<|user|>`` and ``<|assistant|>``, which the
  tokenizer must have: `CHAT_SPECIAL_TOKENS`). The response always ends with ``<|endoftext|>``,
  so the model learns to stop. User text is encoded with no special tokens allowed: data that
  contains the text ``<|endoftext|>`` or ``<|assistant|>`` cannot forge a control token.
- A third kind of template is a prompt string with ``{input}`` where the example's text goes
  (``"Translate English to German:\\n{input}\\n"``), for input -> output tasks (gptlab.data.pairs):
  the example's ``input`` fills it (its ``instruction`` when it has no input, as a chat message
  does), and the response follows the filled template directly. Only ``{input}`` is special.
- `collate_instructions` turns (token ids, prompt length) pairs into (inputs, targets): targets
  are the inputs shifted by one; padding is masked with -100 so it costs nothing, but the
  end-of-text token that ends each response stays a target; optionally the prompt tokens are
  masked too, so the loss is only on the response; everything is cut to the context length.

Malformed files give a GptlabError naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gptlab.errors import GptlabError
from gptlab.io import nested_too_deeply, read_bytes
from gptlab.model.gpt import IGNORE_INDEX
from gptlab.tokenizers.base import EOT, Tokenizer

TABLE_FORMATS = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
FORMATS = ("tsv", "csv", "jsonl", "json")
BALANCE_METHODS = ("none", "undersample", "oversample")
TEMPLATES = ("alpaca", "chat")
USER_TOKEN, ASSISTANT_TOKEN = "<|user|>", "<|assistant|>"
CHAT_SPECIAL_TOKENS = (USER_TOKEN, ASSISTANT_TOKEN)  # train the tokenizer with these (and EOT)
ALPACA_INTRO = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
ALPACA_INTRO_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)
ALPACA_RESPONSE = "### Response:"
INPUT_SLOT = "{input}"  # where a prompt-string template puts the example's text

Column = str | int


# --- reading files ------------------------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    data = read_bytes(path, what)  # missing, a folder, permission denied: one GptlabError
    try:
        return data.decode("utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise GptlabError(f"{path} line {line}: not UTF-8 text (byte {e.start})") from None


def _file_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise GptlabError(f"unknown data format {fmt!r} (expected one of {', '.join(FORMATS)})")
        return fmt
    if path.suffix.lower() not in TABLE_FORMATS:
        raise GptlabError(
            f"cannot tell the format of {path} from its extension (expected "
            f"{', '.join(sorted(TABLE_FORMATS))}, or pass the format)"
        )
    return TABLE_FORMATS[path.suffix.lower()]


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_json_records(path: str | os.PathLike, fmt: str | None = None) -> list[tuple[int, Any]]:
    """(line number, value) for each record of a JSONL file (one value a line, blank lines
    skipped) or each element of a JSON list (the line where the element starts)."""
    path = Path(path)
    fmt = _file_format(path, fmt)
    text = _read_text(path, "data file")
    decoder = json.JSONDecoder()
    records = []
    if fmt == "jsonl":
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((line_no, json.loads(line)))
            except json.JSONDecodeError as e:
                raise GptlabError(f"{path} line {line_no}: bad JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise nested_too_deeply(f"{path} line {line_no}") from None
        return records
    if fmt != "json":
        raise GptlabError(f"{path}: expected a JSON or JSONL file, got format {fmt!r}")
    # walk the top-level list element by element, so each element's line number is known
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise GptlabError(f"{path} line {_line_of(text, pos)}: expected a JSON list of objects ('[')")
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if text.startswith("]", pos) and not records:
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise GptlabError(f"{path} line {e.lineno}: bad JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise nested_too_deeply(f"{path} line {_line_of(text, pos)}") from None
        records.append((_line_of(text, pos), value))
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            break
        else:
            raise GptlabError(
                f"{path} line {_line_of(text, pos)}: bad JSON (expected ',' or ']' in the list)"
            )
    if text[pos + 1 :].strip():
        raise GptlabError(f"{path} line {_line_of(text, pos + 1)}: bad JSON (extra data after the list)")
    return records


def _table_rows(path: Path, text: str, fmt: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank row of a TSV or CSV text."""
    if fmt == "tsv":
        return [(n, line.split("\t")) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # strict: an unclosed quote is an error
    start = 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise GptlabError(f"{path} line {start}: bad CSV ({e})") from None
    return rows


# --- classification -----------------------------------------------------------------------------


@dataclass
class ClassificationData:
    """Texts and integer labels; ``label_names[i]`` is the name of label i."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def counts(self) -> list[int]:
        """Number of examples per class, in label order."""
        counts = [0] * self.num_classes
        for label in self.labels:
            counts[label] += 1
        return counts

    def subset(self, indices: Sequence[int]) -> ClassificationData:
        return ClassificationData(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            list(self.label_names),
            self.source,
        )


def _label_order(names: set[str]) -> list[str]:
    """Sorted label names; numerically when they are all integers (so "10" comes after "2")."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def _cell(value: Any, path: Path, line: int, column: Column, what: str) -> str:
    """A text or label cell, checked: a string (a label may be a JSON integer), not blank."""
    if what == "label" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        expected = "a string or an integer" if what == "label" else "a string"
        raise GptlabError(
            f"{path} line {line}: {what} field {column!r} must be {expected}, got {type(value).__name__}"
        )
    if not value.strip():
        raise GptlabError(f"{path} line {line}: empty {what} in column {column!r}")
    return value.strip() if what == "label" else value


def load_classification(
    path: str | os.PathLike,
    text_column: Column = "text",
    label_column: Column = "label",
    labels: Sequence[str] | None = None,
    header: bool | None = None,
    fmt: str | None = None,
) -> ClassificationData:
    """Read a labelled text file (TSV, CSV, JSONL or JSON list; ``fmt`` or the extension says which).

    Columns are header names or JSON keys (str), or 0-based positions (int). ``header`` says
    whether a TSV/CSV file's first row holds column names; by default it does when a column is
    given by name. ``labels`` fixes the label names and their order (an unknown label in the
    file is then an error); without it, the labels found are sorted. Every row needs a
    non-empty text and label.
    """
    path = Path(path)
    fmt = _file_format(path, fmt)
    if text_column == label_column:
        raise GptlabError(f"text and label must be different columns, both are {text_column!r}")
    rows: list[tuple[int, str, str]] = []  # (line, text, label)
    if fmt in ("jsonl", "json"):
        for column in (text_column, label_column):
            if not isinstance(column, str):
                raise GptlabError(f"{path}: in a JSON file columns are field names, got position {column!r}")
        for line, record in read_json_records(path, fmt):
            if not isinstance(record, dict):
                raise GptlabError(f"{path} line {line}: expected a JSON object, got {type(record).__name__}")
            for column in (text_column, label_column):
                if column not in record:
                    raise GptlabError(
                        f"{path} line {line}: missing field {column!r} (fields: {', '.join(map(str, record))})"
                    )
            text = _cell(record[text_column], path, line, text_column, "text")
            label = _cell(record[label_column], path, line, label_column, "label")
            rows.append((line, text, label))
    else:
        table = _table_rows(path, _read_text(path, "data file"), fmt)
        if header is None:
            header = isinstance(text_column, str) or isinstance(label_column, str)
        positions = {}
        if header:
            if not table:
                raise GptlabError(f"{path}: empty file, expected a header row")
            header_line, names = table.pop(0)
            names = [n.strip() for n in names]
            for column in (text_column, label_column):
                if isinstance(column, str):
                    if column not in names:
                        raise GptlabError(
                            f"{path} line {header_line}: missing column {column!r} in the header "
                            f"(columns: {', '.join(names)})"
                        )
                    positions[column] = names.index(column)
        for column in (text_column, label_column):
            if isinstance(column, str) and not header:
                raise GptlabError(
                    f"{path}: column {column!r} is given by name but the file has no header row; "
                    "give its 0-based position instead"
                )
            if isinstance(column, int):
                if isinstance(column, bool) or column < 0:
                    raise GptlabError(
                        f"{path}: column position must be a non-negative integer, got {column!r}"
                    )
                positions[column] = column
        needed = max(positions.values()) + 1
        separator = "TAB" if fmt == "tsv" else "','"
        for line, fields in table:
            if len(fields) < needed:
                raise GptlabError(
                    f"{path} line {line}: expected at least {needed} fields separated by {separator}, "
                    f"found {len(fields)} (missing column)"
                )
            text = _cell(fields[positions[text_column]], path, line, text_column, "text")
            label = _cell(fields[positions[label_column]], path, line, label_column, "label")
            rows.append((line, text, label))

    if not rows:
        raise GptlabError(f"{path} has no examples")
    if labels is not None:
        label_names = [str(name) for name in labels]
        if len(set(label_names)) != len(label_names) or len(label_names) < 2:
            raise GptlabError(f"labels must be at least two distinct names, got {label_names!r}")
        for line, _, label in rows:
            if label not in label_names:
                raise GptlabError(
                    f"{path} line {line}: unknown label {label!r} (expected one of: {', '.join(label_names)})"
                )
    else:
        label_names = _label_order({label for _, _, label in rows})
        if len(label_names) < 2:
            raise GptlabError(
                f"{path}: found only the label {label_names[0]!r}; a classifier needs at least two "
                "(pass labels=... to read a one-class evaluation file)"
            )
    index = {name: i for i, name in enumerate(label_names)}
    return ClassificationData(
        texts=[text for _, text, _ in rows],
        labels=[index[label] for _, _, label in rows],
        label_names=label_names,
        source=str(path),
    )


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise GptlabError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise GptlabError(
            f"val_fraction + test_fraction must be below 1 (got {val_fraction} + {test_fraction}): "
            "nothing would be left to train on"
        )


def stratified_split(
    data: ClassificationData, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ClassificationData, ClassificationData, ClassificationData]:
    """(train, val, test) with each class split in the same proportions (rounded per class).
    The same data and seed always give the same split; each split is shuffled."""
    _check_fractions(val_fraction, test_fraction)
    rng = random.Random(seed)
    by_class: list[list[int]] = [[] for _ in range(data.num_classes)]
    for i, label in enumerate(data.labels):
        by_class[label].append(i)
    train, val, test = [], [], []
    for indices in by_class:
        rng.shuffle(indices)
        n_test = round(len(indices) * test_fraction)
        n_val = round(len(indices) * val_fraction)
        test += indices[:n_test]
        val += indices[n_test : n_test + n_val]
        train += indices[n_test + n_val :]
    for part in (train, val, test):
        rng.shuffle(part)
    return data.subset(train), data.subset(val), data.subset(test)


def balance(data: ClassificationData, method: str = "undersample", seed: int = 0) -> ClassificationData:
    """Equal class counts: ``undersample`` drops random examples of the larger classes down to the
    smallest class's count; ``oversample`` repeats random examples of the smaller classes up to
    the largest's; ``none`` returns the data unchanged. Use it on the training split only."""
    if method not in BALANCE_METHODS:
        raise GptlabError(f"balance must be one of {', '.join(BALANCE_METHODS)}, got {method!r}")
    if method == "none":
        return data
    counts = data.counts()
    empty = [data.label_names[c] for c, n in enumerate(counts) if n == 0]
    if empty:
        raise GptlabError(f"cannot balance: class {empty[0]!r} has no examples")
    rng = random.Random(seed)
    by_class: list[list[int]] = [[] for _ in range(data.num_classes)]
    for i, label in enumerate(data.labels):
        by_class[label].append(i)
    chosen: list[int] = []
    if method == "undersample":
        target = min(counts)
        for indices in by_class:
            chosen += rng.sample(indices, target)
    else:
        target = max(counts)
        for indices in by_class:
            chosen += indices + rng.choices(indices, k=target - len(indices))
    rng.shuffle(chosen)
    return data.subset(chosen)


def class_weights(data: ClassificationData) -> torch.Tensor:
    """Loss weights (K,) inversely proportional to class frequency: n / (K * count), so each class
    contributes as much to the loss as it would in a balanced set (scikit-learn's "balanced")."""
    counts = data.counts()
    empty = [data.label_names[c] for c, n in enumerate(counts) if n == 0]
    if empty:
        raise GptlabError(f"cannot weigh classes: class {empty[0]!r} has no examples")
    n, k = len(data), data.num_classes
    return torch.tensor([n / (k * c) for c in counts], dtype=torch.float32)


class ClassificationDataset(Dataset):
    """Tokenized texts cut to ``max_length`` tokens (the first ones), with their labels."""

    def __init__(self, data: ClassificationData, tokenizer: Tokenizer, max_length: int) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise GptlabError(f"max_length must be a positive integer, got {max_length!r}")
        self.data = data
        self.max_length = max_length
        encoded = tokenizer.encode_batch(data.texts)
        self.truncated = sum(len(ids) > max_length for ids in encoded)  # how many texts were cut
        self.ids = [ids[:max_length] for ids in encoded]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.data.labels[i]


def collate_classification(
    batch: Sequence[tuple[Sequence[int], int]], pad_id: int, pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids, label) pairs -> idx (B, T) padded on the right with ``pad_id``, lengths (B,),
    labels (B,). T is the batch's longest text (dynamic padding), or ``pad_to`` (longer texts
    are cut to it)."""
    if not batch:
        raise GptlabError("collate_classification: empty batch")
    if any(len(ids) == 0 for ids, _ in batch):
        raise GptlabError("collate_classification: a text encodes to no tokens")
    T = pad_to if pad_to is not None else max(len(ids) for ids, _ in batch)
    idx = torch.full((len(batch), T), pad_id, dtype=torch.long)  # (B, T)
    lengths = torch.tensor([min(len(ids), T) for ids, _ in batch], dtype=torch.long)  # (B,)
    for row, (ids, _) in enumerate(batch):
        idx[row, : lengths[row]] = torch.as_tensor(list(ids[:T]), dtype=torch.long)
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)  # (B,)
    return idx, lengths, labels


# --- instruction following ----------------------------------------------------------------------


@dataclass(frozen=True)
class InstructionExample:
    instruction: str
    input: str = ""
    output: str = ""


def load_instructions(path: str | os.PathLike, fmt: str | None = None) -> list[InstructionExample]:
    """Alpaca-format examples from a JSON list or JSONL: objects with a non-empty string
    ``instruction`` and ``output`` and an optional string ``input``; other fields are ignored."""
    path = Path(path)
    examples = []
    for line, record in read_json_records(path, fmt):
        if not isinstance(record, dict):
            raise GptlabError(
                f"{path} line {line}: expected an object with instruction/input/output, got {type(record).__name__}"
            )
        values = {}
        for field, required in (("instruction", True), ("input", False), ("output", True)):
            value = record.get(field)
            if value is None and not required:
                value = ""
            if field not in record and required:
                raise GptlabError(f"{path} line {line}: missing field {field!r}")
            if not isinstance(value, str):
                raise GptlabError(
                    f"{path} line {line}: field {field!r} must be a string, got {type(value).__name__}"
                )
            if required and not value.strip():
                raise GptlabError(f"{path} line {line}: empty text in field {field!r}")
            values[field] = value
        examples.append(InstructionExample(**values))
    if not examples:
        raise GptlabError(f"{path} has no examples")
    return examples


def split_examples(
    items: Sequence[Any], val_fraction: float = 0.05, test_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Any], list[Any], list[Any]]:
    """(train, val, test): a seeded shuffle cut by the fractions (rounded)."""
    _check_fractions(val_fraction, test_fraction)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_test, n_val = round(len(items) * test_fraction), round(len(items) * val_fraction)

    def pick(indices: list[int]) -> list[Any]:
        return [items[i] for i in indices]

    return pick(order[n_test + n_val :]), pick(order[n_test : n_test + n_val]), pick(order[:n_test])


def is_prompt_template(template: object) -> bool:
    """Whether ``template`` is a prompt string (not a template name): it contains ``{input}``."""
    return isinstance(template, str) and INPUT_SLOT in template and template not in TEMPLATES


def check_template(template: str) -> str:
    """``template`` if it is a template name or a prompt string with ``{input}``; else GptlabError."""
    if template in TEMPLATES or is_prompt_template(template):
        return template
    raise GptlabError(
        f"template must be {' or '.join(TEMPLATES)}, or a prompt string that contains {INPUT_SLOT} where "
        f'the input text goes (e.g. "Translate English to German:\\n{INPUT_SLOT}\\n"), got {template!r}'
    )


def fill_template(template: str, text: str) -> str:
    """A prompt-string template with ``{input}`` replaced by ``text`` (every occurrence)."""
    if not is_prompt_template(template):
        check_template(template)  # a name: the message says what a prompt string needs
        raise GptlabError(f"{template!r} is a template name, not a prompt string with {INPUT_SLOT}")
    return template.replace(INPUT_SLOT, text)


def format_prompt(example: InstructionExample, template: str = "alpaca") -> str:
    """The prompt as text (special tokens written out), ending where the response begins."""
    check_template(template)
    if is_prompt_template(template):
        return fill_template(template, example.input or example.instruction)
    if template == "alpaca":
        intro = ALPACA_INTRO_WITH_INPUT if example.input else ALPACA_INTRO
        text = f"{intro}\n\n### Instruction:\n{example.instruction}\n\n"
        if example.input:
            text += f"### Input:\n{example.input}\n\n"
        return text + f"{ALPACA_RESPONSE}\n"
    user = example.instruction + (f"\n\n{example.input}" if example.input else "")
    return f"{USER_TOKEN}\n{user}\n{ASSISTANT_TOKEN}\n"


def _special_id(tokenizer: Tokenizer, token: str, template: str) -> int:
    specials = tokenizer.special_tokens
    if token not in specials:
        hint = f" (train the tokenizer with the special tokens {', '.join(CHAT_SPECIAL_TOKENS)})"
        if template == "alpaca":
            hint = ""
        raise GptlabError(
            f"the {template!r} template needs the special token {token} but the tokenizer has "
            f"only {sorted(specials) or 'none'}{hint}"
        )
    return specials[token]


def encode_prompt(example: InstructionExample, tokenizer: Tokenizer, template: str = "alpaca") -> list[int]:
    """Token ids of the prompt (what generation starts from). Text from the example is encoded
    with no special tokens allowed; only the template's own markers are special tokens."""
    check_template(template)
    if template == "alpaca" or is_prompt_template(template):
        return tokenizer.encode(format_prompt(example, template))
    user_id = _special_id(tokenizer, USER_TOKEN, template)
    assistant_id = _special_id(tokenizer, ASSISTANT_TOKEN, template)
    user = example.instruction + (f"\n\n{example.input}" if example.input else "")
    return [user_id, *tokenizer.encode(f"\n{user}\n"), assistant_id, *tokenizer.encode("\n")]


def encode_example(
    example: InstructionExample, tokenizer: Tokenizer, template: str = "alpaca"
) -> tuple[list[int], int]:
    """(prompt + response + <|endoftext|> ids, prompt length) for training."""
    eot = _special_id(tokenizer, EOT, template)
    prompt = encode_prompt(example, tokenizer, template)
    return prompt + tokenizer.encode(example.output) + [eot], len(prompt)


def extract_response(text: str, template: str = "alpaca") -> str:
    """The response part of a decoded prompt + generation: after the last response marker,
    up to the first <|endoftext|>, stripped. Text without a marker is taken as all response (a
    prompt-string template has none: pass the generated text alone)."""
    check_template(template)
    if not is_prompt_template(template):  # a prompt string has no marker: the output follows it
        marker = ALPACA_RESPONSE if template == "alpaca" else ASSISTANT_TOKEN
        cut = text.rfind(marker)
        if cut >= 0:
            text = text[cut + len(marker) :]
    return text.split(EOT, 1)[0].strip()


class InstructionDataset(Dataset):
    """Encoded examples: item i is (ids, prompt_length) for `collate_instructions`."""

    def __init__(
        self, examples: Sequence[InstructionExample], tokenizer: Tokenizer, template: str = "alpaca"
    ) -> None:
        self.examples = list(examples)
        self.template = template
        self.items = [encode_example(ex, tokenizer, template) for ex in self.examples]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.items[i]


def collate_instructions(
    batch: Sequence[tuple[Sequence[int], int]],
    pad_id: int,
    context_length: int | None = None,
    mask_prompt: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, prompt_length) pairs -> inputs (B, T) and targets (B, T) for ``GPT.forward``.

    For one sequence s (prompt + response + <|endoftext|>): inputs are s[:-1] and targets s[1:],
    so position i learns to predict token i+1 and the final <|endoftext|> is a target (the model
    learns to stop). T is the longest row of this batch (dynamic padding), at most
    ``context_length``: longer rows are cut there. Shorter rows are padded with ``pad_id`` in the
    inputs and ``ignore_index`` in the targets, so padding never counts in the loss even when
    ``pad_id`` is the end-of-text id. With ``mask_prompt``, the targets that are prompt tokens
    (the first prompt_length - 1) are ``ignore_index`` too: the loss is on the response only.
    """
    if not batch:
        raise GptlabError("collate_instructions: empty batch")
    if context_length is not None and context_length < 1:
        raise GptlabError(f"context_length must be a positive integer, got {context_length!r}")
    rows = []
    for ids, prompt_length in batch:
        ids = list(ids)
        if len(ids) < 2:
            raise GptlabError(f"collate_instructions: a sequence needs at least 2 tokens, got {len(ids)}")
        x, y = ids[:-1], ids[1:]
        if mask_prompt:
            n_masked = min(max(prompt_length - 1, 0), len(y))
            y[:n_masked] = [ignore_index] * n_masked
        if context_length is not None:
            x, y = x[:context_length], y[:context_length]
        rows.append((x, y))
    T = max(len(x) for x, _ in rows)
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(rows), T), ignore_index, dtype=torch.long)  # (B, T)
    for row, (x, y) in enumerate(rows):
        inputs[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        targets[row, : len(y)] = torch.tensor(y, dtype=torch.long)
    return inputs, targets
