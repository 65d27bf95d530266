"""Reading a task's data files into rows that know where they came from (``file:line``), so a
malformed row is an error that names its file and line, and nothing is scored half-read."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gptlab.data.tasks import read_json_records
from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import Doc


def read_text(path: Path) -> str:
    """The file's text (UTF-8; a byte-order mark is dropped); a missing or undecodable file is a
    GptlabError naming it."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GptlabError(f"task data file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise GptlabError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise GptlabError(f"cannot read task data file {path}: {e.strerror or e}") from None


def json_rows(path: Path) -> list[tuple[str, Any]]:
    """``(file:line, value)`` for each record of a JSONL file or element of a JSON list."""
    if not Path(path).is_file():
        raise GptlabError(f"task data file {path} does not exist")
    return [(f"{path}:{line}", value) for line, value in read_json_records(path)]


def csv_rows(path: Path, columns: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """``(file:line, {column: value})`` for each row of a CSV file with a header row that has at
    least ``columns``. A row is counted from the line it starts on (a quoted field may hold a
    newline); a row with another number of fields than the header, or an unclosed quote, is an
    error naming the file and line."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    rows: list[tuple[str, dict[str, str]]] = []
    header: list[str] | None = None
    start = 1
    try:
        for fields in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if header is None:
                header = fields
                missing = [c for c in columns if c not in header]
                if missing:
                    raise GptlabError(f"{where}: the header has no column {', '.join(map(repr, missing))}")
                continue
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise GptlabError(f"{where}: {len(fields)} fields, the header has {len(header)}")
            rows.append((where, dict(zip(header, fields, strict=True))))
    except csv.Error as e:
        raise GptlabError(f"{path}:{start}: bad CSV ({e})") from None
    if header is None:
        raise GptlabError(f"{path}: empty file (expected a header row)")
    return rows


def text_field(where: str, row: Any, key: str) -> str:
    """``row[key]`` as a non-empty string; anything else is an error naming ``where``."""
    if not isinstance(row, dict):
        raise GptlabError(f"{where}: expected an object, got {type(row).__name__}")
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise GptlabError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def jsonl_docs(path: Path, fields: Mapping[str, type | tuple[type, ...]]) -> list[Doc]:
    """The records of a JSONL file as docs, in file order, each checked to have ``fields`` (name ->
    type); a malformed row is a GptlabError naming the file and line."""
    docs = []
    for line, record in read_json_records(path, "jsonl"):
        where = f"{path}:{line}"
        if not isinstance(record, dict):
            raise GptlabError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for name, kind in fields.items():
            if name not in record:
                raise GptlabError(f"{where}: the row has no {name!r} field")
            value = record[name]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise GptlabError(f"{where}: {name!r} should be {_kind_name(kind)}, got {value!r:.60}")
        docs.append(Doc(len(docs), record, where))
    return docs


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "text", "int": "an integer"}.get(k.__name__, k.__name__) for k in kinds)
