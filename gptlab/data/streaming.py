"""``gptlab data prepare`` at corpus scale: stream any number of files into fixed-size token shards.

    DATA/
      train-00000.bin ...   training tokens, shard_tokens each (the last may be shorter)
      val-00000.bin ...     validation tokens, the same way
      tokenizer.json        the tokenizer that produced them
      meta.json             the manifest (format gptlab-tokens, version 2), written last

Shards are flat uint16 arrays when vocab_size <= 65536, else uint32 (numpy memmap, no header), as
in gptlab.data.shards; ``TokenDataset`` reads either layout.

The pipeline: gptlab.data.readers yields document pieces; worker processes (``workers``) tokenize
them in batches, at most ``workers * IN_FLIGHT_PER_WORKER`` batches in flight, results taken back in input
order, so the ids never depend on the number of workers and memory does not grow with the corpus.
Each document ends with the tokenizer's ``<|endoftext|>`` id when it has one.

The split is decided per document before any token is seen: document 0 always trains, any other
goes to validation when a seeded hash of its number falls under ``val_fraction``. When that holds
out under half the target (one document, or a few), the tail of the training stream makes up the
rest: a split is a list of segments (shard file, start, stop), so this needs no copy.

Resuming: tokens are appended to ``<split>-NNNNN.bin.part`` and a full shard is renamed into place.
Every CHECKPOINT_CHARS characters (and at each full shard) the open files are flushed and
``progress.json`` records how many pieces are done and how long each open shard is. ``resume=True``
truncates the open shards to those lengths and skips the pieces already done (read again, not
tokenized again), so an interrupted run finishes with the same bytes as an uninterrupted one. The
inputs, tokenizer and settings must be the same, which the record checks.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gptlab.data.readers import Piece, corpus_files, iter_pieces, source_record
from gptlab.data.shards import (
    CHUNK_CHARS,
    META_FILE,
    META_FORMAT,
    MIN_DOCUMENT_SPLIT_SHARE,
    PARALLEL_MIN_CHARS,
    TOKENIZER_FILE,
    can_cut,
    token_dtype,
)
from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, read_json

PathLike = str | os.PathLike

MANIFEST_VERSION = 2
PROGRESS_FILE = "progress.json"
DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB of uint16 per shard, as nanoGPT-style loaders use
CHECKPOINT_CHARS = 64 << 20  # characters between progress records (at most ~64 MB of text to redo)
BATCH_CHARS = 1 << 18  # characters per task sent to a worker: amortises the IPC over short documents
IN_FLIGHT_PER_WORKER = 4  # batches queued per worker: enough to keep it busy, bounded memory
SPLIT_HASH_SCALE = float(1 << 64)


# ---------------------------------------------------------------------------------------------
# tokenizing in worker processes

_worker_tokenizer = None


def _init_worker(tokenizer_type, data: dict) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer_type.from_dict(data)


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return encode_texts(_worker_tokenizer, texts)


def encode_texts(tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ids of ``texts`` concatenated (special-token text stays text), in the tokens' dtype,
    and where each text's ids end: one array crosses the process boundary, not a list per text."""
    dtype = token_dtype(tokenizer.vocab_size)
    parts = [np.asarray(tokenizer.encode(text, allowed_special=()), dtype=dtype) for text in texts]
    ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
    return (np.concatenate(parts) if parts else np.empty(0, dtype=dtype)), ends


def _batches(pieces: Iterator[Piece], batch_chars: int) -> Iterator[list[Piece]]:
    batch: list[Piece] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece.text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _unbatch(batch: list[Piece], result: tuple[np.ndarray, np.ndarray]) -> Iterator[tuple[Piece, np.ndarray]]:
    ids, ends = result
    start = 0
    for piece, end in zip(batch, ends.tolist()):
        yield piece, ids[start:end]
        start = end


def encode_stream(
    pieces: Iterator[Piece], tokenizer, workers: int, batch_chars: int = BATCH_CHARS
) -> Iterator[tuple[Piece, np.ndarray]]:
    """(piece, ids) for every piece, in order; ``workers`` > 1 tokenizes in that many processes.
    Pieces travel in batches of about ``batch_chars`` characters (many short documents per task)."""
    if workers < 1:
        raise GptlabError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for batch in _batches(pieces, batch_chars):
            yield from _unbatch(batch, encode_texts(tokenizer, [p.text for p in batch]))
        return
    # Pool.imap would read the whole input ahead; a bounded queue of futures keeps memory flat
    initargs = (type(tokenizer), tokenizer.to_dict())
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=initargs) as pool:
        queue: deque = deque()
        for batch in _batches(pieces, batch_chars):
            queue.append((batch, pool.submit(_encode_in_worker, [p.text for p in batch])))
            if len(queue) >= workers * IN_FLIGHT_PER_WORKER:
                done, future = queue.popleft()
                yield from _unbatch(done, future.result())
        while queue:
            done, future = queue.popleft()
            yield from _unbatch(done, future.result())


# ---------------------------------------------------------------------------------------------
# writing shards


class ShardWriter:
    """Appends one split's tokens to fixed-size shard files, ``<split>-NNNNN.bin``."""

    def __init__(self, out: Path, split: str, shard_tokens: int, dtype: np.dtype, state: dict | None = None):
        self.out, self.split, self.shard_tokens, self.dtype = out, split, shard_tokens, dtype
        state = state or {"shards": [], "open_tokens": 0, "open_documents": 0}
        self.shards: list[dict] = list(state["shards"])
        self.open_tokens: int = state["open_tokens"]
        self.open_documents: int = state["open_documents"]
        part, finished = self._part_path(), self.out / self._name()
        if not part.exists() and finished.exists():
            os.replace(finished, part)  # completed after the last progress record: reopen it
        if part.exists() or self.open_tokens:
            # a resumed run: drop whatever was written after the last progress record
            with open(part, "r+b") as f:
                f.truncate(self.open_tokens * dtype.itemsize)
        self._file = open(part, "ab")  # noqa: SIM115 - kept open across appends, closed in finish

    def _name(self) -> str:
        return f"{self.split}-{len(self.shards):05d}.bin"

    def _part_path(self) -> Path:
        return self.out / (self._name() + ".part")

    def append(self, ids: np.ndarray) -> bool:
        """Write ``ids``; True when a shard was completed."""
        rolled = False
        while len(ids):
            room = self.shard_tokens - self.open_tokens
            self._file.write(ids[:room].tobytes())
            self.open_tokens += min(room, len(ids))
            ids = ids[room:]
            if self.open_tokens == self.shard_tokens:
                self._close_shard()
                # "wb": a part file left from after the last progress record is stale
                self._file = open(self._part_path(), "wb")  # noqa: SIM115
                rolled = True
        return rolled

    def end_document(self) -> None:
        self.open_documents += 1

    def _close_shard(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name = self._name()
        os.replace(self.out / (name + ".part"), self.out / name)
        self.shards.append({"file": name, "tokens": self.open_tokens, "documents": self.open_documents})
        self.open_tokens = self.open_documents = 0

    def state(self) -> dict:
        """The writer's position, durable on disk (flushed) when returned."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return {"shards": self.shards, "open_tokens": self.open_tokens, "open_documents": self.open_documents}

    def finish(self) -> list[dict]:
        """Close the last shard (kept only when it holds tokens); the list of shards."""
        if self.open_tokens:
            self._close_shard()
        else:
            self._file.close()
            self._part_path().unlink(missing_ok=True)
        return self.shards

    def close(self) -> None:
        self._file.close()

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards) + self.open_tokens


# ---------------------------------------------------------------------------------------------
# the split


def goes_to_val(document: int, val_fraction: float, seed: int) -> bool:
    """Whether document number ``document`` is held out: a seeded hash under ``val_fraction``
    (document 0 always trains, so the training split is never empty of documents)."""
    if document == 0 or val_fraction <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{document}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / SPLIT_HASH_SCALE < val_fraction


def _segments(shards: Sequence[dict]) -> list[dict]:
    return [{"file": s["file"], "start": 0, "stop": s["tokens"]} for s in shards]


def _take_tail(segments: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """(segments without their last ``n`` tokens, those last ``n`` tokens as segments)."""
    head, tail = [dict(s) for s in segments], []
    while n > 0 and head:
        last = head[-1]
        take = min(n, last["stop"] - last["start"])
        tail.insert(0, {"file": last["file"], "start": last["stop"] - take, "stop": last["stop"]})
        last["stop"] -= take
        n -= take
        if last["stop"] == last["start"]:
            head.pop()
    return head, tail


def _count(segments: Sequence[dict]) -> int:
    return sum(s["stop"] - s["start"] for s in segments)


# ---------------------------------------------------------------------------------------------
# prepare


def prepare_corpus(
    inputs: Sequence[PathLike],
    tokenizer,
    out_dir: PathLike,
    *,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    val_fraction: float = 0.1,
    workers: int | None = None,
    seed: int = 0,
    text_field: str = "text",
    separator: str | None = None,
    resume: bool = False,
    chunk_chars: int = CHUNK_CHARS,
    progress: bool = True,
) -> dict:
    """Tokenize ``inputs`` (files and folders, see gptlab.data.readers) into shards in ``out_dir``
    (see the module docstring); returns the manifest. ``separator``: text that ends a document
    inside text files (gptlab.data.readers). ``resume``: continue the unfinished run
    recorded in ``out_dir/progress.json`` (an error when there is none or it does not match).
    ``workers``: tokenizer processes; None: one per CPU core when the input files hold at least
    PARALLEL_MIN_CHARS bytes, else 1 (starting workers costs more than it saves). The ids never
    depend on it."""
    from tqdm import tqdm

    if not 0.0 <= val_fraction < 1.0:
        raise GptlabError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if shard_tokens < 1:
        raise GptlabError(f"shard_tokens must be at least 1, got {shard_tokens}")
    out = Path(out_dir)
    files = corpus_files(inputs)
    sources = [source_record(path) for path in files]  # one read of every file, before any work
    if workers is None:
        big = sum(s["bytes"] for s in sources) >= PARALLEL_MIN_CHARS
        workers = (os.cpu_count() or 1) if big else 1
    dtype = token_dtype(tokenizer.vocab_size)
    tokenizer_data = tokenizer.to_dict()
    tokenizer_sha256 = _dict_sha256(tokenizer_data)
    settings = {
        "shard_tokens": shard_tokens,
        "val_fraction": val_fraction,
        "seed": seed,
        "text_field": text_field,
        "separator": separator,
        "chunk_chars": chunk_chars,
        "dtype": dtype.name,
        "tokenizer_sha256": tokenizer_sha256,
        "sources": sources,
    }
    record = _start(out, settings, resume)
    if not resume:
        tokenizer.save(out / TOKENIZER_FILE)
    writers = {
        split: ShardWriter(out, split, shard_tokens, dtype, record["writers"].get(split))
        for split in ("train", "val")
    }
    done, documents = record["pieces_done"], record["documents_done"]
    eot = None if tokenizer.eot_id is None else np.array([tokenizer.eot_id], dtype=dtype)
    pieces = iter_pieces(files, text_field, chunk_chars, cut=can_cut(tokenizer), separator=separator)
    skipped = _skip(pieces, done)
    try:
        with tqdm(unit="char", unit_scale=True, desc="tokenizing", disable=None if progress else True) as bar:
            since_checkpoint = 0
            for piece, ids in encode_stream(skipped, tokenizer, workers):
                writer = writers["val" if goes_to_val(piece.document, val_fraction, seed) else "train"]
                rolled = writer.append(ids)
                if piece.last:
                    if eot is not None:
                        rolled = writer.append(eot) or rolled
                    writer.end_document()
                    documents += 1
                done += 1
                since_checkpoint += len(piece.text)
                bar.update(len(piece.text))
                if rolled or since_checkpoint >= CHECKPOINT_CHARS:
                    _checkpoint(out, settings, done, documents, writers)
                    since_checkpoint = 0
    except BaseException:
        for writer in writers.values():
            writer.close()
        raise
    shards = {split: writer.finish() for split, writer in writers.items()}
    if documents == 0:
        raise GptlabError("the inputs hold no documents (every file, line or row was empty)")
    manifest = _manifest(tokenizer, tokenizer_sha256, settings, shards, documents, sources)
    atomic_write_json(out / META_FILE, manifest)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return manifest


def _dict_sha256(data: dict) -> str:
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _skip(pieces: Iterator[Piece], n: int) -> Iterator[Piece]:
    for i, piece in enumerate(pieces):
        if i >= n:
            yield piece


def _start(out: Path, settings: dict, resume: bool) -> dict:
    """The progress record to start from: a fresh one, or (resume) the one in ``out``."""
    fresh = {"pieces_done": 0, "documents_done": 0, "writers": {}}
    if not resume:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GptlabError(f"cannot create output folder {out}: {e.strerror or e}") from None
        return fresh
    path = out / PROGRESS_FILE
    if not path.is_file():
        why = "it is finished (meta.json exists)" if (out / META_FILE).is_file() else f"{path} not found"
        raise GptlabError(f"nothing to resume in {out}: {why}")
    record = read_json(path, "preparation progress record")
    if record.get("settings") != settings:
        changed = sorted(k for k in settings if record.get("settings", {}).get(k) != settings[k])
        raise GptlabError(
            f"cannot resume {out}: the inputs or settings changed since it started ({', '.join(changed)}); "
            "start again with --overwrite"
        )
    return record


def _checkpoint(
    out: Path, settings: dict, done: int, documents: int, writers: dict[str, ShardWriter]
) -> None:
    state = {split: writer.state() for split, writer in writers.items()}
    atomic_write_json(
        out / PROGRESS_FILE,
        {"settings": settings, "pieces_done": done, "documents_done": documents, "writers": state},
    )


def _manifest(
    tokenizer, tokenizer_sha256: str, settings: dict, shards: dict, documents: int, sources: list
) -> dict:
    val_fraction = settings["val_fraction"]
    train, val = _segments(shards["train"]), _segments(shards["val"])
    total = _count(train) + _count(val)
    target = math.ceil(val_fraction * total)
    val_documents = sum(s["documents"] for s in shards["val"])
    method = "documents" if val_documents else "none"
    if _count(val) < MIN_DOCUMENT_SPLIT_SHARE * target:
        # too few documents held out (one document, or a few): the tail of the training stream
        # makes up the rest
        train, tail = _take_tail(train, target - _count(val))
        val = val + tail
        method = "documents+tail" if val_documents else "tail"
    if _count(train) == 0:
        raise GptlabError("the inputs produced no training tokens: give more text or a smaller val_fraction")
    return {
        "format": META_FORMAT,
        "version": MANIFEST_VERSION,
        "dtype": settings["dtype"],
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "tokenizer": TOKENIZER_FILE,
        "tokenizer_sha256": tokenizer_sha256,
        "shard_tokens": settings["shard_tokens"],
        "shards": shards,
        "splits": {
            "train": {"tokens": _count(train), "segments": train},
            "val": {"tokens": _count(val), "segments": val},
        },
        "split": {
            "method": method,
            "val_documents": val_documents,
            "val_fraction": val_fraction,
            "seed": settings["seed"],
        },
        "documents": documents,
        "text_field": settings["text_field"],
        "separator": settings["separator"],
        "sources": sources,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
