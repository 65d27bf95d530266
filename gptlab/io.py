"""Safe file I/O shared by every module that writes or reads user files.

Threat model: files given to gptlab (weights, tokenizers, checkpoints) may come from anyone, so
nothing here unpickles: tensors are read with safetensors, and the only `torch.load` call uses
``weights_only=True``. Writes are atomic (temp file in the same folder, fsync, rename) so a
crash or Ctrl-C mid-save leaves the previous file intact, never a half-written one. Reads turn
every failure (missing, permission denied, not UTF-8, invalid or absurdly nested JSON) into a
GptlabError naming the file: `read_bytes`, `read_text`, `read_json`, `parse_json`.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def os_errors_as_gptlab(context: str) -> Iterator[None]:
    """Turn an OSError (permission denied, disk full, ...) into a GptlabError starting with ``context``."""
    try:
        yield
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise GptlabError(f"{context}: {e.strerror or e}{where}") from None


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """The bytes of a file; a missing, unreadable (permission denied, I/O error) or directory path
    is a GptlabError naming ``what`` and the path, never an OSError traceback."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise read_error(e, what, path) from None


def read_error(e: OSError, what: str, path: PathLike) -> GptlabError:
    """The GptlabError for an OSError met while opening or reading ``path``."""
    if isinstance(e, FileNotFoundError):
        return GptlabError(f"{what} not found: {path}")
    if isinstance(e, IsADirectoryError):
        return GptlabError(f"{what} {path} is a directory, expected a file")
    return GptlabError(f"cannot read {what} {path}: {e.strerror or e}")


def read_text(path: PathLike, what: str = "file") -> str:
    """A UTF-8 text file (see `read_bytes` for the errors); bytes that are not UTF-8 are an error."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GptlabError(f"{what} {path} is not UTF-8 text (byte {e.start}): is it a binary file?") from None


def parse_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` for untrusted text; ``where`` (e.g. "tokenizer file tok.json") names it in
    the GptlabError for invalid or too deeply nested JSON. The standard decoder recurses once per
    ``[`` or ``{``, so ``[[[[...`` a hundred thousand deep would otherwise end in a RecursionError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GptlabError(
            f"{where} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except RecursionError:
        raise nested_too_deeply(where) from None
    except UnicodeDecodeError as e:  # bytes given, and they are not UTF-8
        raise GptlabError(f"{where} is not UTF-8 text (byte {e.start})") from None


def nested_too_deeply(where: str) -> GptlabError:
    return GptlabError(
        f"{where} is nested too deeply (lists or objects more than ~{sys.getrecursionlimit()} levels "
        "inside each other): no file gptlab reads is like that; is it corrupt or hostile?"
    )


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning every failure into a GptlabError that names the file."""
    return parse_json(read_text(path, what), f"{what} {path}")


def save_safetensors(tensors: dict, path: PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors to ``path`` atomically in safetensors format (contiguous copies, no sharing)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(flat, str(p), metadata=metadata))


# safetensors' own limit on the JSON header (its Rust reader refuses larger ones)
MAX_SAFETENSORS_HEADER = 100_000_000


def read_safetensors_header(path: PathLike, what: str = "weights file") -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` from a safetensors file's header alone (8-byte little-endian
    length, then that much JSON), without reading or allocating any tensor: what a loader checks
    a model config against before it builds anything the config's sizes could make enormous."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
            if length is None or not 2 <= length <= min(size - 8, MAX_SAFETENSORS_HEADER):
                raise GptlabError(
                    f"cannot read {what} {path}: no valid safetensors header (truncated, or not a "
                    "safetensors file?)"
                )
            raw = f.read(length)
    except OSError as e:
        raise read_error(e, what, path) from None
    header = parse_json(raw, f"the header of {what} {path}")
    if not isinstance(header, dict):
        raise GptlabError(f"cannot read {what} {path}: its header is not a JSON object")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise GptlabError(f"cannot read {what} {path}: tensor {name!r} has no valid shape in the header")
        shapes[name] = tuple(shape)
    return shapes


def load_safetensors(path: PathLike, device: str = "cpu") -> dict:
    """Load a safetensors file; a missing, unreadable, truncated or corrupt file gives a
    GptlabError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise GptlabError(f"weights file not found: {path}")
    _check_readable(path, "weights file")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise GptlabError(
            f"cannot read weights file {path}: {e} (truncated or not a safetensors file?)"
        ) from None


def _check_readable(path: Path, what: str) -> None:
    """Open ``path`` once with Python: a library that opens it itself (safetensors' Rust code,
    torch.load) reports permission denied in its own words, or as "No such file"."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise read_error(e, what, path) from None


def torch_load_safe(path: PathLike, map_location: str = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``): never unpickles code."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise GptlabError(f"file not found: {path}")
    _check_readable(path, "file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise GptlabError(f"cannot load {path} safely (weights_only=True): {e}") from None
