"""Where a task's data files are on this machine: ``--data-dir DIR`` reads ``DIR/<path>`` (the
layout of ``../shared/data/tasks``); without it, the data registry downloads the file by name
(or copies it from ``$GPTLAB_DATA_MIRROR``) and caches it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import Doc, TaskFile


def local_path(file: TaskFile, data_dir: str | os.PathLike | None = None) -> Path:
    """The local path of one task file; a file missing under ``data_dir`` is a GptlabError."""
    if data_dir is not None:
        path = Path(data_dir).expanduser() / file.path
        if not path.is_file():
            raise GptlabError(
                f"{path} does not exist: --data-dir {data_dir} should hold {file.path} "
                f"(the layout of the shared task data), or leave --data-dir out to download {file.dataset!r}"
            )
        return path
    from gptlab.data.registry import download

    return download(file.dataset, progress=False)


def local_paths(files: Sequence[TaskFile], data_dir: str | os.PathLike | None = None) -> list[Path]:
    """`local_path` of each file, in order."""
    return [local_path(f, data_dir) for f in files]


def jsonl_docs(path: Path, fields: Mapping[str, type | tuple[type, ...]]) -> list[Doc]:
    """The records of a JSONL file as docs, in file order, each checked to have ``fields`` (name ->
    type); a malformed row is a GptlabError naming the file and line."""
    from gptlab.data.tasks import read_json_records

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
