"""Documents in, overlapping chunks of words out, without holding a whole file in memory.

A "token" here is a run of non-space characters (a word with its punctuation): chunking must not
depend on the embedder's tokenizer, so one index serves BM25, MiniLM and a gptlab run alike.
Chunks of ``size`` words start every ``size - overlap`` words, so consecutive chunks share exactly
``overlap`` words; the last chunk may be shorter, and is only emitted when it holds a word that no
earlier chunk covered. A chunk's text is its words joined by single spaces.

Inputs (``read_documents``):
- a text file: one document, read in 1 MiB blocks (a multi-gigabyte file, even one without a
  newline, streams through);
- a ``.jsonl`` file: one document per line, ``{"id": str, "text": str}`` (ids unique), the form
  for a collection with gold document ids;
- a folder: every file below it, in sorted order, each read as above; the document id is the
  path relative to the folder.
A file whose first 8 KiB hold a NUL byte or are not UTF-8 is skipped with a message (binary); a
decoding error later in a file is a GptlabError naming the file and line.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.io import parse_json

SNIFF_BYTES = 8192
READ_BLOCK = 1 << 20  # bytes read at a time from a text document
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    doc: str  # the document's id
    start: int  # the index of its first word in the document
    text: str

    def to_dict(self) -> dict:
        return {"doc": self.doc, "start": self.start, "text": self.text}


def chunk_spans(n_words: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """The [start, end) word spans `chunk_words` cuts ``n_words`` words into (for tests and docs)."""
    return [(s, s + len(c)) for s, c in chunk_words(map(str, range(n_words)), size, overlap)]


def check_sizes(size: int, overlap: int) -> None:
    if size < 1:
        raise GptlabError(f"chunk size must be at least 1 word, got {size}")
    if not 0 <= overlap < size:
        raise GptlabError(f"overlap must be >= 0 and smaller than the chunk size {size}, got {overlap}")


def chunk_words(words: Iterable[str], size: int, overlap: int) -> Iterator[tuple[int, list[str]]]:
    """(start, words) windows of ``size`` words every ``size - overlap`` words; streams."""
    check_sizes(size, overlap)
    step = size - overlap
    buffer: list[str] = []
    start = 0
    emitted = False
    for word in words:
        buffer.append(word)
        if len(buffer) == size:
            yield start, list(buffer)
            emitted = True
            buffer = buffer[step:]  # the overlap carries into the next window
            start += step
    # the tail: only when it holds words no window covered (after a window, the buffer's first
    # `overlap` words are covered already), or when the document was shorter than one window
    if len(buffer) > overlap or (not emitted and buffer):
        yield start, buffer


def _sniff_binary(path: Path) -> str | None:
    """Why ``path`` looks binary (a NUL byte, or not UTF-8 in its first bytes), or None."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if b"\0" in head:
        return "it holds NUL bytes"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "it is not UTF-8 text"
    return None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 file, streamed; a bad byte is a GptlabError with its line
    (each line is decoded on its own, so the number is exact)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError:
                raise GptlabError(f"{path}:{number}: not UTF-8 text") from None


def _text_blocks(path: Path) -> Iterator[str]:
    """The text of a UTF-8 file in blocks of READ_BLOCK bytes (a file with no newline at all still
    streams); a bad byte is a GptlabError naming its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as f:
        while True:
            raw = f.read(READ_BLOCK)
            final = not raw
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:  # e.object: the decoder's pending bytes + this block
                where = line + e.object[: e.start].count(b"\n")
                raise GptlabError(f"{path}:{where}: not UTF-8 text") from None
            line += text.count("\n")
            if text:
                yield text
            if final:
                return


def _words(path: Path) -> Iterator[str]:
    carry = ""  # a word cut by a block boundary waits for the rest of it
    for block in _text_blocks(path):
        text = carry + block
        words = _WORD.findall(text)
        carry = words.pop() if words and not text[-1].isspace() else ""
        yield from words
    if carry:
        yield carry


def _jsonl_documents(path: Path) -> Iterator[tuple[str, Iterator[str]]]:
    seen: set[str] = set()
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        row = parse_json(line, where)  # invalid or absurdly nested: a GptlabError naming file:line
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("id"), str)
            or not isinstance(row.get("text"), str)
        ):
            raise GptlabError(f'{where}: expected {{"id": string, "text": string}}')
        if row["id"] in seen:
            raise GptlabError(f"{where}: document id {row['id']!r} appears twice")
        seen.add(row["id"])
        yield row["id"], iter(_WORD.findall(row["text"]))


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        found = []
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            found.extend(Path(folder) / n for n in sorted(names))
        return found
    raise GptlabError(f"documents not found: {root} (give a file or a folder)")


def read_documents(
    root: str | os.PathLike, warn: Callable[[str], None] = lambda message: None
) -> Iterator[tuple[str, Iterator[str]]]:
    """(document id, its words streamed) for every document under ``root`` (see the module
    docstring); ``warn`` hears about every skipped file."""
    root = Path(root)
    for path in _files(root):
        reason = _sniff_binary(path)
        if reason:
            warn(f"skipped {path}: {reason} (binary?)")
            continue
        if path.suffix == ".jsonl":
            yield from _jsonl_documents(path)
        else:
            doc = path.name if path == root else path.relative_to(root).as_posix()
            yield doc, _words(path)


def read_chunks(
    root: str | os.PathLike, size: int, overlap: int, warn: Callable[[str], None] = lambda message: None
) -> Iterator[Chunk]:
    """Every chunk of every document under ``root``, streamed, in order."""
    check_sizes(size, overlap)
    for doc, words in read_documents(root, warn):
        for start, window in chunk_words(words, size, overlap):
            yield Chunk(doc, start, " ".join(window))
