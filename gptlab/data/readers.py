"""Reading a corpus of any size as a stream of document pieces, for ``gptlab data prepare``.

Inputs are files and folders (searched recursively, in sorted path order). A file's format comes
from its name, after a compression suffix is taken off:

    NAME.gz / NAME.zst   decompressed on the fly (gzip from the standard library; zstandard from
                         the ``corpus`` extra), then read as NAME
    NAME.jsonl / .ndjson one document per line: the string in field ``text_field``
    NAME.parquet         one document per row of column ``text_field`` (pyarrow, ``corpus`` extra)
    anything else        UTF-8 text, the whole file one document; with ``separator`` (e.g.
                         ``<|endoftext|>``, as TinyStories writes between stories) one document
                         per stretch of text between separators (newlines around them dropped)

Nothing is read whole: text comes in blocks, JSON lines one at a time, Parquet in record batches,
so memory does not grow with the corpus. Long documents are cut into pieces of a bit over
``chunk_chars`` characters at the cut points of gptlab.data.shards.split_text (a newline between
two non-space characters, where the built-in pre-tokenization patterns cut anyway), so the ids of
the pieces joined equal the ids of the whole document. A tokenizer with a custom pattern gets
whole documents (``cut=False``).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.data.corpus import TEXT_SUFFIXES
from gptlab.data.shards import CHUNK_CHARS, CUT_POINT, split_text
from gptlab.errors import GptlabError

PathLike = str | os.PathLike

COMPRESSION_SUFFIXES = (".gz", ".zst")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIX = ".parquet"
CORPUS_SUFFIXES = TEXT_SUFFIXES | set(JSONL_SUFFIXES) | {PARQUET_SUFFIX}
READ_BYTES = 1 << 20  # bytes read (and hashed) per step
PARQUET_BATCH_ROWS = 1024
EXTRA_HINT = "pip install 'gptlab[corpus]'"


@dataclass(frozen=True)
class Piece:
    """A piece of one document: ``text``, the document's number in the corpus (0-based) and
    whether this piece ends it."""

    text: str
    document: int
    last: bool


def _strip_compression(path: Path) -> tuple[str, str | None]:
    """(the file name without a compression suffix, the suffix or None)."""
    name = path.name
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, None


def file_format(path: Path) -> str:
    """'text', 'jsonl' or 'parquet' for ``path`` (a compression suffix is looked through)."""
    inner, _ = _strip_compression(path)
    suffix = Path(inner).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == PARQUET_SUFFIX:
        return "parquet"
    return "text"


def corpus_files(inputs: Sequence[PathLike]) -> list[Path]:
    """The files to read: a file given by name whatever its suffix; a folder's files (recursive,
    sorted, hidden ones skipped) whose suffix, past a compression suffix, is a corpus suffix."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and Path(_strip_compression(p)[0]).suffix.lower() in CORPUS_SUFFIXES
            )
            if not found:
                raise GptlabError(
                    f"folder {path} holds no corpus files ({', '.join(sorted(CORPUS_SUFFIXES))})"
                )
            files.extend(found)
        else:
            raise GptlabError(f"input not found: {path}")
    if not files:
        raise GptlabError("no input given: expected files or folders")
    for path in files:
        if file_format(path) == "parquet" and _strip_compression(path)[1]:
            raise GptlabError(
                f"{path}: a compressed Parquet file is not supported (Parquet compresses its own pages)"
            )
    return files


def source_record(path: Path) -> dict:
    """{"source", "bytes", "sha256"} of a file, read in blocks."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while block := f.read(READ_BYTES):
                digest.update(block)
                size += len(block)
    except OSError as e:
        raise GptlabError(f"cannot read {path}: {e.strerror or e}") from None
    return {"source": str(path), "bytes": size, "sha256": digest.hexdigest()}


def open_binary(path: Path):
    """``path`` opened for reading bytes, decompressed when it ends in .gz or .zst."""
    _, compression = _strip_compression(path)
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if compression == ".gz":
        return gzip.GzipFile(fileobj=raw)
    if compression == ".zst":
        try:
            import zstandard
        except ImportError:
            raw.close()
            raise GptlabError(
                f"{path}: reading .zst files needs the zstandard package ({EXTRA_HINT})"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


def iter_pieces(
    files: Sequence[Path],
    text_field: str = "text",
    chunk_chars: int = CHUNK_CHARS,
    cut: bool = True,
    separator: str | None = None,
) -> Iterator[Piece]:
    """Every document of ``files`` in order, as pieces (see the module docstring)."""
    document = 0
    for path in files:
        try:
            for text_pieces in _documents(path, text_field, chunk_chars, cut, separator):
                for piece, last in text_pieces:
                    yield Piece(piece, document, last)
                document += 1
        except GptlabError:
            raise
        except (OSError, EOFError) as e:  # unreadable, or a truncated / corrupt .gz stream
            raise GptlabError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        except Exception as e:  # a corrupt .zst stream: zstandard.ZstdError, named here so the
            # module imports without zstandard
            if type(e).__name__ != "ZstdError":
                raise
            raise GptlabError(f"cannot read {path}: {e}") from None


def _documents(
    path: Path, text_field: str, chunk_chars: int, cut: bool, separator: str | None
) -> Iterator[Iterator[tuple[str, bool]]]:
    """Per document of ``path``: an iterator of (piece, is_last); each must be consumed in turn."""
    kind = file_format(path)
    if kind == "text" and separator:
        for text in _separated_texts(path, separator):
            yield _cut(text, chunk_chars, cut)
    elif kind == "text":
        yield _text_pieces(path, chunk_chars, cut)
    elif kind == "jsonl":
        for text in _jsonl_texts(path, text_field):
            yield _cut(text, chunk_chars, cut)
    else:
        for text in _parquet_texts(path, text_field):
            yield _cut(text, chunk_chars, cut)


def _cut(text: str, chunk_chars: int, cut: bool) -> Iterator[tuple[str, bool]]:
    pieces = split_text(text, chunk_chars) if cut else [text]
    for i, piece in enumerate(pieces):
        yield piece, i == len(pieces) - 1


def _text_pieces(path: Path, chunk_chars: int, cut: bool) -> Iterator[tuple[str, bool]]:
    """One text file as pieces, read a block at a time; cut points as split_text's."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, buffer, scanned, seen = 0, "", 0, False
    with open_binary(path) as f:
        while True:
            block = f.read(READ_BYTES)
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last block
            try:
                buffer += decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                where = offset - pending + e.start
                raise GptlabError(
                    f"{path} is not UTF-8 text: invalid byte at (decompressed) offset {where}"
                ) from None
            if "\x00" in buffer:
                raise GptlabError(f"{path} looks binary: it holds a NUL byte, expected UTF-8 text")
            offset += len(block)
            while cut and len(buffer) > chunk_chars:
                match = CUT_POINT.search(buffer, max(chunk_chars, scanned))
                if match is None:
                    scanned = max(0, len(buffer) - 1)  # the lookbehind needs one character back
                    break
                yield buffer[: match.end()], False
                seen, buffer, scanned = True, buffer[match.end() :], 0
            if not block:
                break
    if not buffer and not seen:
        raise GptlabError(f"{path} is empty, expected text")
    yield buffer, True


def _separated_texts(path: Path, separator: str) -> Iterator[str]:
    """The texts between ``separator``s of a text file, read a block at a time; blank ones skipped."""
    with open_binary(path) as f:
        lines = io.TextIOWrapper(f, encoding="utf-8", newline="")
        buffer = ""
        try:
            while block := lines.read(READ_BYTES):
                buffer += block
                *texts, buffer = buffer.split(separator)
                yield from (t.strip("\r\n") for t in texts if t.strip())
        except UnicodeDecodeError:
            raise GptlabError(f"{path} is not UTF-8 text") from None
        if buffer.strip():
            yield buffer.strip("\r\n")


def _jsonl_texts(path: Path, text_field: str) -> Iterator[str]:
    with open_binary(path) as f:
        lines = io.TextIOWrapper(f, encoding="utf-8", newline="\n")
        line_no = 0
        try:
            for line_no, line in enumerate(lines, 1):  # noqa: B007 - line_no is read after a decode error
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise GptlabError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
                text = record.get(text_field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise GptlabError(
                        f"{path}:{line_no}: expected a JSON object with a string field {text_field!r} "
                        "(choose the field with --text-field)"
                    )
                if text:
                    yield text
        except UnicodeDecodeError:
            raise GptlabError(f"{path}:{line_no + 1}: not UTF-8 text") from None


def _parquet_texts(path: Path, text_field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise GptlabError(f"{path}: reading Parquet files needs the pyarrow package ({EXTRA_HINT})") from None
    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid on a file that is not Parquet
        raise GptlabError(f"{path}: not a readable Parquet file ({e})") from None
    if text_field not in table.schema_arrow.names:
        raise GptlabError(
            f"{path}: no column {text_field!r} (columns: {', '.join(table.schema_arrow.names)}); "
            "choose it with --text-field"
        )
    row = 0
    for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
        for text in batch.column(0).to_pylist():
            row += 1
            if text is None:
                continue
            if not isinstance(text, str):
                raise GptlabError(f"{path}: row {row} of column {text_field!r} is not a string")
            if text:
                yield text
