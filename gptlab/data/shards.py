"""Token shards on disk and the batches a trainer draws from them.

``prepare`` tokenizes documents once and writes a data folder a user can open:

    DATA/
      train.bin       the training tokens, one flat array (numpy memmap, no header)
      val.bin         the validation tokens, same layout
      tokenizer.json  the tokenizer that produced them
      meta.json       dtype, token counts, vocab_size, eot_id, how the split was made, sources

Tokens are ``uint16`` when every id fits (vocab_size <= 65536, e.g. GPT-2's 50257: half the
disk and page cache of uint32), else ``uint32``. Each document is followed by the tokenizer's
``<|endoftext|>`` id when it has one (as GPT-2 and nanoGPT do), so the model learns where texts
end; text of ``<|endoftext|>`` inside a document stays ordinary text, not the special token.

The train/val split: with several documents, whole documents are held out (chosen at random with
``seed``, aiming at ``val_fraction`` of the tokens), so no document leaks into both splits. With a
single document, or when no choice of whole documents comes near the target (one huge document
and a few tiny ones), the last ``val_fraction`` of the token stream becomes the validation split
(nanoGPT's shakespeare_char split). ``meta.json`` records which method was used.

Big inputs are tokenized by several workers (the tokenizer's ``encode_batch``), with the same ids
as one worker would produce.

Each file is written atomically, ``meta.json`` last and only after the .bin files are complete;
``TokenDataset`` checks the file sizes against it, so an interrupted run is detected, not read.

This layout (meta version 1) is what ``prepare`` writes for documents held in memory (the
trainer's ``data.input``). ``gptlab data prepare`` streams a corpus of any size into fixed-size
shards instead (gptlab.data.streaming, meta version 2: each split a list of shard segments);
``TokenDataset`` reads both, the shards through ``ShardedTokens``.

``BatchSampler`` draws (x, y) batches of windows; its position is a step counter from which every
batch is recomputed, so ``state_dict()`` is a few integers and a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.data.corpus import find_text_files, read_text_file
from gptlab.errors import GptlabError
from gptlab.io import atomic_write, atomic_write_json, read_json

PathLike = str | os.PathLike

META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"
META_FORMAT = "gptlab-tokens"
META_VERSION = 1
SPLITS = ("train", "val")
UINT16_VOCAB_LIMIT = 1 << 16  # ids 0..65535 fit in uint16

# Documents longer than this are cut into pieces so several workers can share one big file. Cuts
# fall only on a newline between two non-space characters, where the built-in pre-tokenization
# patterns (gpt2, gpt4) cut anyway, so the ids never depend on --workers (tokenizers with a
# custom pattern are never cut). Same rule as BPETokenizer.encode_file.
CHUNK_CHARS = 1 << 20
CUT_POINT = re.compile(r"(?<=\S)\n(?=\S)")
PARALLEL_MIN_CHARS = 4 << 20  # below this, starting workers costs more than it saves
PIECES_PER_WORKER = 4  # pieces handed to encode_batch per worker at a time (progress in between)
# documents whose tokens sum to at least this share of the val_fraction target make a
# document-level split acceptable; below it the split falls back to the tail of the stream
MIN_DOCUMENT_SPLIT_SHARE = 0.5
PATH_MAX = 4096  # Linux's longest path: a longer str cannot be a file name mistaken for text
SCAN_TOKENS = 1 << 24  # tokens checked per step when validating a memmapped split
SAMPLER_MODES = ("random", "epoch")


# ---------------------------------------------------------------------------------------------
# tokenizing


def split_text(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into pieces of a bit over ``chunk_chars`` characters, each cut right after a
    newline that has a non-space character on both sides; ``"".join(pieces) == text``."""
    pieces, start = [], 0
    while len(text) - start > chunk_chars:
        cut = CUT_POINT.search(text, start + chunk_chars)
        if cut is None:
            break
        pieces.append(text[start : cut.end()])
        start = cut.end()
    pieces.append(text[start:])
    return pieces


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= UINT16_VOCAB_LIMIT else np.uint32)


def can_cut(tokenizer) -> bool:
    """True when cutting at ``CUT_POINT`` cannot change the ids: no pre-tokenization pattern
    (char-level), or one of the built-in patterns."""
    from gptlab.tokenizers.pretokenize import PATTERNS

    pattern = getattr(tokenizer, "pattern", None)
    return pattern is None or pattern in PATTERNS.values()


def tokenize_documents(
    documents: Sequence[str],
    tokenizer,
    num_workers: int | None = None,
    chunk_chars: int = CHUNK_CHARS,
    progress: bool = True,
) -> list[np.ndarray]:
    """Encode each document (without separators) into an array of ``token_dtype(vocab_size)``.

    Special-token text inside a document is encoded as ordinary text. ``num_workers``: passed to
    the tokenizer's ``encode_batch`` (threads with the tiktoken backend, else processes); None:
    one per CPU core for inputs over PARALLEL_MIN_CHARS, else 1. The ids do not depend on it.
    """
    from tqdm import tqdm

    cut = can_cut(tokenizer)
    pieces = [
        (i, piece)
        for i, doc in enumerate(documents)
        for piece in (split_text(doc, chunk_chars) if cut else [doc])
    ]
    total_chars = sum(len(doc) for doc in documents)
    if num_workers is None:
        num_workers = (os.cpu_count() or 1) if total_chars >= PARALLEL_MIN_CHARS else 1
    if num_workers < 1:
        raise GptlabError(f"num_workers must be at least 1, got {num_workers}")
    dtype = token_dtype(tokenizer.vocab_size)
    encoded: list[list[np.ndarray]] = [[] for _ in documents]
    group = num_workers * PIECES_PER_WORKER
    with tqdm(
        total=total_chars,
        unit="char",
        unit_scale=True,
        desc="tokenizing",
        disable=None if progress else True,  # None: only on a terminal
    ) as bar:
        for g in range(0, len(pieces), group):
            batch = pieces[g : g + group]
            # allowed_special=(): "<|endoftext|>" typed in a document is text, not a document boundary
            ids = tokenizer.encode_batch([p for _, p in batch], allowed_special=(), num_workers=num_workers)
            for (i, piece), piece_ids in zip(batch, ids):
                encoded[i].append(np.asarray(piece_ids, dtype=dtype))
                bar.update(len(piece))
    return [np.concatenate(parts) if parts else np.empty(0, dtype=dtype) for parts in encoded]


# ---------------------------------------------------------------------------------------------
# splitting


def choose_val_documents(lengths: Sequence[int], val_fraction: float, seed: int) -> list[int] | None:
    """Indices of the documents to hold out for validation, or None when a tail split is needed.

    Documents are visited in a seeded random order and taken while they fit under the target
    (val_fraction of all tokens); at least one document always stays in train.
    """
    total = sum(lengths)
    target = val_fraction * total
    if len(lengths) < 2 or target <= 0:
        return None
    chosen, taken = [], 0
    for i in np.random.default_rng(seed).permutation(len(lengths)).tolist():
        if taken + lengths[i] <= target and len(chosen) < len(lengths) - 1:
            chosen.append(i)
            taken += lengths[i]
    if taken < MIN_DOCUMENT_SPLIT_SHARE * target:
        return None
    return sorted(chosen)


# ---------------------------------------------------------------------------------------------
# prepare


def _gather_documents(inputs: Sequence[PathLike]) -> tuple[list[str], list[dict]]:
    """Documents and their provenance: a path (file or folder) gives one document per file; a
    ``str`` that is not a ``Path`` is the text of one document."""
    documents, sources = [], []
    for item in inputs:
        if isinstance(item, str):
            if "\n" not in item and len(item) <= PATH_MAX and os.path.exists(item):
                raise GptlabError(
                    f"input {item!r} is a str naming an existing file; strs are taken as text to tokenize: "
                    "pass pathlib.Path(...) to read the file"
                )
            if not item:
                raise GptlabError(f"input text number {len(documents)} is empty, expected text")
            documents.append(item)
            sources.append(_source_record(f"<text {len(documents) - 1}>", item.encode("utf-8")))
        else:
            for path in find_text_files([item]):
                text = read_text_file(path)
                documents.append(text)
                sources.append(_source_record(str(path), path.read_bytes()))
    if not documents:
        raise GptlabError("no input given: expected text files, folders or texts")
    return documents, sources


def _source_record(name: str, data: bytes) -> dict:
    return {"source": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def prepare(
    inputs: Sequence[PathLike],
    tokenizer,
    out_dir: PathLike,
    val_fraction: float = 0.1,
    num_workers: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Tokenize ``inputs`` and write ``train.bin``, ``val.bin``, ``tokenizer.json`` and ``meta.json``
    into ``out_dir`` (see the module docstring). Returns the meta dict.

    ``inputs``: ``pathlib.Path`` objects (files, or folders read recursively as in
    gptlab.data.corpus) and/or ``str`` texts, each one document.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise GptlabError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():  # before the work, not after it
        raise GptlabError(f"output folder {out_dir} exists and is not a folder")
    documents, sources = _gather_documents(inputs)
    dtype = token_dtype(tokenizer.vocab_size)
    doc_tokens = tokenize_documents(documents, tokenizer, num_workers=num_workers, progress=progress)
    if tokenizer.eot_id is not None:
        eot = np.array([tokenizer.eot_id], dtype=dtype)
        doc_tokens = [np.concatenate([ids, eot]) for ids in doc_tokens]

    val_docs = choose_val_documents([len(ids) for ids in doc_tokens], val_fraction, seed)
    if val_docs is not None:
        held_out = set(val_docs)
        train = _concat([ids for i, ids in enumerate(doc_tokens) if i not in held_out], dtype)
        val = _concat([doc_tokens[i] for i in val_docs], dtype)
        split = {"method": "documents", "val_documents": len(val_docs)}
    else:
        stream = _concat(doc_tokens, dtype)
        n_val = math.ceil(val_fraction * len(stream))
        train, val = stream[: len(stream) - n_val], stream[len(stream) - n_val :]
        split = {"method": "tail" if n_val else "none", "val_documents": 0}
    if len(train) == 0:
        raise GptlabError("the inputs produced no training tokens: give more text or a smaller val_fraction")

    out = _output_dir(out_dir)
    try:
        # drop the old meta.json first: until the new one is written, the folder reads as unfinished
        (out / META_FILE).unlink(missing_ok=True)
        for name, tokens in (("train", train), ("val", val)):
            atomic_write(out / f"{name}.bin", tokens.tofile)
        tokenizer.save(out / TOKENIZER_FILE)  # atomic, like every gptlab save
    except OSError as e:
        raise GptlabError(f"cannot write the token shards to {out}: {e.strerror or e}") from None
    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "tokenizer": TOKENIZER_FILE,
        "splits": {
            "train": {"file": "train.bin", "tokens": len(train)},
            "val": {"file": "val.bin", "tokens": len(val)},
        },
        "split": split | {"val_fraction": val_fraction, "seed": seed},
        "documents": len(documents),
        "sources": sources,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_json(out / META_FILE, meta)
    except OSError as e:
        raise GptlabError(f"cannot write {out / META_FILE}: {e.strerror or e}") from None
    return meta


def _output_dir(path: PathLike) -> Path:
    """Create the output folder; a file in the way or a folder that cannot be made is a GptlabError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GptlabError(f"output folder {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GptlabError(f"cannot create output folder {path}: {e.strerror or e}") from None
    return path


def _concat(arrays: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# reading


def _open_flat(path: Path, tokens: int, dtype: np.dtype, meta_path: Path):
    """A memmap of a token file whose size must be ``tokens`` tokens of ``dtype``."""
    expected_bytes = tokens * dtype.itemsize
    if not path.is_file():
        raise GptlabError(f"token file {path} not found (listed in {meta_path})")
    size = path.stat().st_size
    if size != expected_bytes:
        raise GptlabError(
            f"token file {path} has {size} bytes, expected {expected_bytes} ({tokens} tokens of "
            f"{dtype.name} per {meta_path}): truncated or from another preparation"
        )
    return np.memmap(path, dtype=dtype, mode="r") if size else np.empty(0, dtype=dtype)


def has_split(data_dir: PathLike, split: str) -> bool:
    """Whether ``data_dir`` is a finished data folder (either layout) listing ``split``."""
    meta_path = Path(data_dir) / META_FILE
    if not meta_path.is_file():
        return False
    meta = read_json(meta_path, "data meta file")
    return isinstance(meta, dict) and split in meta.get("splits", {})


class ShardedTokens:
    """Token segments (slices of memmapped shard files) read as one array: ``len``, ``[i]``,
    ``[a:b]`` (a view when inside one segment, else a copy of just that range) and ``np.asarray``.

    Shards of a version-2 data folder are opened once each; every shard's file size is checked
    against the manifest, so a truncated shard is an error on open, not a short read later."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.dtype = parts[0].dtype if parts else np.dtype(np.uint16)
        self.ends = np.cumsum([len(p) for p in self.parts], dtype=np.int64)

    @classmethod
    def open(
        cls, folder: Path, segments: list[dict], dtype: np.dtype, meta: dict, meta_path: Path
    ) -> ShardedTokens:
        shards = {s["file"]: s for split in meta.get("shards", {}).values() for s in split}
        opened: dict[str, np.ndarray] = {}
        parts = []
        for seg in segments:
            name = seg["file"]
            if name not in shards or "/" in name or name.startswith("."):
                raise GptlabError(f"{meta_path}: segment file {name!r} is not one of the listed shards")
            if name not in opened:
                opened[name] = _open_flat(folder / name, shards[name]["tokens"], dtype, meta_path)
            if not 0 <= seg["start"] <= seg["stop"] <= len(opened[name]):
                raise GptlabError(
                    f"{meta_path}: segment {seg} is outside its shard of {len(opened[name])} tokens"
                )
            parts.append(opened[name][seg["start"] : seg["stop"]])
        tokens = cls(parts)
        tokens.dtype = dtype
        return tokens

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return np.asarray(self)[key]
            return self._range(start, max(start, stop))
        n = len(self)
        i = int(key) + n if int(key) < 0 else int(key)
        if not 0 <= i < n:
            raise IndexError(f"token index {key} out of range for {n} tokens")
        part = int(np.searchsorted(self.ends, i, side="right"))
        return self.parts[part][i - (int(self.ends[part - 1]) if part else 0)]

    def _range(self, start: int, stop: int) -> np.ndarray:
        if start == stop:
            return np.empty(0, dtype=self.dtype)
        first = int(np.searchsorted(self.ends, start, side="right"))
        last = int(np.searchsorted(self.ends, stop - 1, side="right"))
        base = int(self.ends[first - 1]) if first else 0
        if first == last:
            return self.parts[first][start - base : stop - base]
        pieces = [self.parts[first][start - base :]]
        pieces += self.parts[first + 1 : last]
        pieces.append(self.parts[last][: stop - int(self.ends[last - 1])])
        return np.concatenate(pieces)

    def __array__(self, dtype=None, copy=None):
        whole = self._range(0, len(self))
        return whole if dtype is None else whole.astype(dtype)

    def head(self, n: int) -> ShardedTokens:
        """The first ``n`` tokens, still sharded (no copy)."""
        parts, left = [], n
        for part in self.parts:
            if left <= 0:
                break
            parts.append(part[:left])
            left -= len(part)
        out = ShardedTokens(parts)
        out.dtype = self.dtype
        return out


class TokenDataset:
    """One split of a prepared data folder, memory-mapped: ``len(ds)`` tokens in ``ds.tokens``.

    Opening checks meta.json, the file size against the recorded token count, and that every id
    is below ``vocab_size`` (a scan of the whole file: a few ms per million tokens).
    """

    def __init__(self, data_dir: PathLike, split: str = "train") -> None:
        self.data_dir = Path(data_dir)
        meta_path = self.data_dir / META_FILE
        if not meta_path.is_file():
            raise GptlabError(
                f"{meta_path} not found: {self.data_dir} is not a prepared data folder (or its preparation "
                "did not finish); run `gptlab data prepare` first"
            )
        self.meta = meta = read_json(meta_path, "data meta file")
        if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
            raise GptlabError(f"{meta_path}: field 'format' must be {META_FORMAT!r}")
        if split not in meta.get("splits", {}):
            raise GptlabError(
                f"{meta_path}: no split {split!r}, expected one of {', '.join(meta.get('splits', {}))}"
            )
        self.split = split
        self.vocab_size: int = meta["vocab_size"]
        self.eot_id: int | None = meta.get("eot_id")
        self.dtype = np.dtype(meta["dtype"])
        if self.dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
            raise GptlabError(f"{meta_path}: field 'dtype' must be uint16 or uint32, got {meta['dtype']!r}")
        info = meta["splits"][split]
        if "segments" in info:  # version 2: fixed-size shards (gptlab.data.streaming)
            self.path = self.data_dir
            self.tokens = ShardedTokens.open(self.data_dir, info["segments"], self.dtype, meta, meta_path)
            if len(self.tokens) != info["tokens"]:
                raise GptlabError(
                    f"{meta_path}: the {split} segments hold {len(self.tokens)} tokens, but 'tokens' says {info['tokens']}"
                )
        else:
            self.path = self.data_dir / info["file"]
            self.tokens = _open_flat(self.path, info["tokens"], self.dtype, meta_path)
        self.meta_tokens = len(self.tokens)  # the whole split's, before any `head` cut
        self._check_ids()

    def _check_ids(self) -> None:
        for start in range(0, len(self.tokens), SCAN_TOKENS):
            chunk = self.tokens[start : start + SCAN_TOKENS]
            top = int(chunk.max())
            if top >= self.vocab_size:
                where = start + int(np.argmax(chunk >= self.vocab_size))
                raise GptlabError(
                    f"token file {self.path}: token {where} has id {int(self.tokens[where])}, but vocab_size "
                    f"is {self.vocab_size} (meta.json): the file was made with another tokenizer"
                )

    def __len__(self) -> int:
        return len(self.tokens)

    def head(self, fraction: float) -> TokenDataset:
        """This split cut to its first ``fraction`` (0 < f <= 1) of tokens, rounded up (in place;
        returned): train.data_fraction, the data-size axis of an overfitting study. The first
        tokens, not a random sample, so a smaller fraction's data is part of a larger one's."""
        if not 0 < fraction <= 1:
            raise GptlabError(f"data fraction must be in (0, 1], got {fraction!r}")
        n = math.ceil(len(self.tokens) * fraction)
        self.tokens = self.tokens.head(n) if isinstance(self.tokens, ShardedTokens) else self.tokens[:n]
        return self

    @property
    def tokenizer_path(self) -> Path:
        return self.data_dir / self.meta.get("tokenizer", TOKENIZER_FILE)

    def load_tokenizer(self):
        """The tokenizer saved beside the tokens."""
        from gptlab.tokenizers import load_tokenizer

        return load_tokenizer(self.tokenizer_path)

    def check_window(self, block_size: int) -> None:
        """Raise a GptlabError unless the split holds at least one window of block_size + 1 tokens."""
        if block_size < 1:
            raise GptlabError(f"block_size must be at least 1, got {block_size}")
        if len(self) < block_size + 1:
            cut = f" (cut to its first tokens of {self.meta_tokens})" if len(self) < self.meta_tokens else ""
            raise GptlabError(
                f"the {self.split} split of {self.data_dir}{cut} has {len(self)} tokens, fewer than "
                f"block_size + 1 = {block_size + 1}: use a smaller block_size or more text "
                "(or a larger val_fraction for the val split)"
            )

    def windows(self, starts: np.ndarray, block_size: int) -> tuple[Any, Any]:
        """x, y int64 tensors (len(starts), block_size): the windows at ``starts``, y shifted by one."""
        import torch

        rows = np.stack([self.tokens[s : s + block_size + 1] for s in starts.tolist()]).astype(np.int64)
        buf = torch.from_numpy(rows)  # (B, T + 1)
        return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # (B, T) each


# ---------------------------------------------------------------------------------------------
# sampling


class BatchSampler:
    """Draws training batches: ``next_batch() -> (x, y)``, int64 tensors (batch_size, block_size).

    Modes:
    - ``random``: every window start in the split equally likely, drawn with replacement (nanoGPT).
    - ``epoch``: the split is cut into non-overlapping windows; each epoch visits all of them once in
      a fresh random order (sampling without replacement), so an epoch is one pass over the tokens.

    Distributed training: rank ``r`` of ``world_size`` W. In epoch mode all ranks shuffle the same
    way and rank r takes every W-th window of the order, so ranks never share a window within an
    epoch (leftover windows that do not divide evenly are skipped, so every rank has the same number
    of batches per epoch). In random mode each rank has its own random stream.

    Resuming: batch k is a pure function of (seed, mode, rank, world_size, k), so ``state_dict()``
    is JSON-serialisable integers and ``load_state_dict()`` resumes exactly. The same state resumes
    every rank (the rank is not part of the state), so saving rank 0's state is enough.
    """

    def __init__(
        self,
        dataset: TokenDataset,
        batch_size: int,
        block_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mode: str = "random",
    ) -> None:
        if mode not in SAMPLER_MODES:
            raise GptlabError(f"sampler mode must be one of {', '.join(SAMPLER_MODES)}, got {mode!r}")
        if batch_size < 1:
            raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
        if seed < 0:
            raise GptlabError(f"seed must be a non-negative integer, got {seed}")
        if not 0 <= rank < world_size:
            raise GptlabError(
                f"rank must be in [0, world_size), got rank {rank} with world_size {world_size}"
            )
        dataset.check_window(block_size)
        self.dataset, self.batch_size, self.block_size = dataset, batch_size, block_size
        self.seed, self.rank, self.world_size, self.mode = seed, rank, world_size, mode
        self.step = 0  # batches drawn so far
        # epoch mode: non-overlapping windows start at multiples of block_size
        self.windows_total = (len(dataset) - 1) // block_size
        self.windows_per_rank = self.windows_total // world_size
        if mode == "epoch" and self.windows_per_rank == 0:
            raise GptlabError(
                f"the {dataset.split} split has {self.windows_total} windows of {block_size + 1} tokens, "
                f"fewer than world_size {world_size}: every rank needs at least one"
            )
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    @property
    def epoch(self) -> int | None:
        """Epoch-mode: the epoch the next batch starts in (None in random mode)."""
        if self.mode != "epoch":
            return None
        return (self.step * self.batch_size) // self.windows_per_rank

    def _epoch_starts(self, epoch: int) -> np.ndarray:
        """This rank's window starts for ``epoch``, in visiting order."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.windows_total)
            mine = order[self.rank :: self.world_size][: self.windows_per_rank]
            self._epoch_cache = (epoch, mine * self.block_size)
        return self._epoch_cache[1]

    def batch_starts(self, step: int) -> np.ndarray:
        """The window starts (batch_size,) of batch number ``step`` (0-based) on this rank."""
        if self.mode == "random":
            n_starts = len(self.dataset) - self.block_size  # a window needs block_size + 1 tokens
            rng = np.random.default_rng([self.seed, self.rank, self.world_size, step])
            return rng.integers(0, n_starts, size=self.batch_size)
        first = step * self.batch_size  # this rank's window counter, across epochs
        starts = []
        for i in range(first, first + self.batch_size):
            epoch, pos = divmod(i, self.windows_per_rank)
            starts.append(self._epoch_starts(epoch)[pos])
        return np.array(starts, dtype=np.int64)

    def next_batch(self) -> tuple[Any, Any]:
        """x, y: int64 tensors (batch_size, block_size); y[:, t] is the token after x[:, t]."""
        starts = self.batch_starts(self.step)
        self.step += 1
        return self.dataset.windows(starts, self.block_size)

    def state_dict(self) -> dict:
        return {
            "mode": self.mode,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "block_size": self.block_size,
            "world_size": self.world_size,
            "dataset_tokens": len(self.dataset),
            "step": self.step,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; the sampling settings must match, or resuming could not be exact."""
        for key in ("mode", "seed", "batch_size", "block_size", "world_size", "dataset_tokens"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                raise GptlabError(
                    f"cannot resume the batch sampler exactly: the saved state has {key}={state.get(key)!r}, "
                    f"this run has {key}={mine!r}"
                )
        step = state.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise GptlabError(
                f"batch sampler state: field 'step' must be a non-negative integer, got {step!r}"
            )
        self.step = step


def iter_eval_batches(
    dataset: TokenDataset,
    batch_size: int,
    block_size: int,
    max_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[Any, Any]]:
    """Fixed evaluation batches: the same windows on every call, so losses compare across evals.

    Non-overlapping windows; when there are more than ``max_batches * batch_size`` of them, that
    many are taken evenly spread over the whole split (not just its beginning). The last batch may
    be smaller. Under DDP, rank r takes batches r, r + W, ... (the split of work may be uneven).
    """
    if batch_size < 1:
        raise GptlabError(f"batch_size must be at least 1, got {batch_size}")
    if max_batches is not None and max_batches < 1:
        raise GptlabError(f"max_batches must be at least 1 (or None for all), got {max_batches}")
    dataset.check_window(block_size)
    n_windows = (len(dataset) - 1) // block_size
    n_used = n_windows if max_batches is None else min(n_windows, max_batches * batch_size)
    starts = (np.arange(n_used, dtype=np.int64) * n_windows // n_used) * block_size
    batches = [starts[i : i + batch_size] for i in range(0, n_used, batch_size)]
    for batch in batches[rank::world_size]:
        yield dataset.windows(batch, block_size)


def sample_windows(tokens, n: int, length: int, seed: int = 0) -> list[list[int]]:
    """``n`` windows of ``length`` tokens at random starts (seeded) of a token array; fewer when
    the array holds fewer non-overlapping windows than asked for, none when it is too short."""
    tokens = np.asarray(tokens)
    if len(tokens) < length:
        return []
    n_starts = len(tokens) - length + 1
    rng = np.random.default_rng(seed)
    n = min(n, max(1, len(tokens) // length))
    starts = rng.choice(n_starts, size=n, replace=False) if n <= n_starts else np.arange(n_starts)
    return [tokens[s : s + length].astype(np.int64).tolist() for s in np.sort(starts)]
