"""Input -> output pairs for task fine-tuning and generation evaluation (translation,
summarisation): any JSONL (or JSON list) whose objects hold the input text in one field and the
target in another, e.g. Multi30k's ``{"en": ..., "de": ...}`` or SciTLDR's
``{"document": ..., "summary": ..., "references": [...]}``.

The prompt template that turns an input into a prompt (a string with ``{input}``) is
gptlab.data.tasks' (`fill_template`), where the named templates live too. The template and the field names are recorded in the fine-tuned run
(model.json ``extra``: ``template``, ``input_field``, ``output_field``), so evaluating the run
needs neither again.

Every record must be an object with a non-empty string input; the output field must be a
non-empty string, or (for evaluation, where a segment may have several references) a non-empty
list of them. Anything else is a GptlabError naming the file and the line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gptlab.data.tasks import read_json_records
from gptlab.errors import GptlabError


@dataclass(frozen=True)
class Pair:
    """One example: the input text, its reference output(s), the line it was read from."""

    input: str
    references: tuple[str, ...]
    line: int = 0

    @property
    def output(self) -> str:
        """The (first) reference: the training target."""
        return self.references[0]


def _text(value: object, path: Path, line: int, field: str, allow_list: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        values: tuple = (value,)
    elif allow_list and isinstance(value, list) and value:
        values = tuple(value)
    else:
        expected = "a string or a non-empty list of strings" if allow_list else "a string"
        raise GptlabError(
            f"{path} line {line}: field {field!r} must be {expected}, got {type(value).__name__}"
        )
    for v in values:
        if not isinstance(v, str):
            raise GptlabError(
                f"{path} line {line}: field {field!r} holds a {type(v).__name__}, expected strings"
            )
        if not v.strip():
            raise GptlabError(f"{path} line {line}: empty text in field {field!r}")
    return values


def load_pairs(
    path: str | os.PathLike,
    input_field: str,
    output_field: str,
    *,
    multiple_references: bool = False,
    fmt: str | None = None,
) -> list[Pair]:
    """Every record of a JSONL / JSON-list file as a `Pair`; other fields are ignored. With
    ``multiple_references`` the output field may be a list of references (evaluation)."""
    path = Path(path)
    if not input_field or not output_field:
        raise GptlabError("give both the input field and the output field")
    if input_field == output_field:
        raise GptlabError(f"input and output must be different fields, both are {input_field!r}")
    pairs = []
    for line, record in read_json_records(path, fmt):
        if not isinstance(record, dict):
            raise GptlabError(f"{path} line {line}: expected a JSON object, got {type(record).__name__}")
        for field in (input_field, output_field):
            if field not in record:
                fields = ", ".join(map(str, record)) or "none"
                raise GptlabError(f"{path} line {line}: missing field {field!r} (fields: {fields})")
        (text,) = _text(record[input_field], path, line, input_field, allow_list=False)
        references = _text(record[output_field], path, line, output_field, allow_list=multiple_references)
        pairs.append(Pair(text, references, line))
    if not pairs:
        raise GptlabError(f"{path} has no examples")
    return pairs
