"""Where a task's data files are on this machine: ``--data-dir DIR`` reads ``DIR/<path>`` (the
layout of ``../shared/data/tasks``); without it, the data registry downloads the file by name
(or copies it from ``$GPTLAB_DATA_MIRROR``) and caches it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.eval.tasks.base import TaskFile


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
