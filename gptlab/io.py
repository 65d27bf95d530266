"""Safe file I/O shared by every module that writes or reads user files.

Threat model: files given to gptlab (weights, tokenizers, checkpoints) may come from anyone, so
nothing here unpickles: tensors are read with safetensors, and the only `torch.load` call uses
``weights_only=True``. Writes are atomic (temp file in the same folder, fsync, rename) so a
crash or Ctrl-C mid-save leaves the previous file intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError

PathLike = str | os.PathLike


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path`` in one atomic step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning every failure into a GptlabError that names the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GptlabError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise GptlabError(f"{what} {path} is a directory, expected a file") from None
    except UnicodeDecodeError as e:
        raise GptlabError(f"{what} {path} is not UTF-8 text (byte {e.start}): is it a binary file?") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GptlabError(
            f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None


def save_safetensors(tensors: dict, path: PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors to ``path`` atomically in safetensors format (contiguous copies, no sharing)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(flat, str(p), metadata=metadata))


def load_safetensors(path: PathLike, device: str = "cpu") -> dict:
    """Load a safetensors file; a missing, truncated or corrupt file gives a GptlabError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise GptlabError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise GptlabError(
            f"cannot read weights file {path}: {e} (truncated or not a safetensors file?)"
        ) from None


def torch_load_safe(path: PathLike, map_location: str = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``): never unpickles code."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise GptlabError(f"file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise GptlabError(f"cannot load {path} safely (weights_only=True): {e}") from None
