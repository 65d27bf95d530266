"""Byte-level BPE (byte pair encoding), GPT-2 style: train, encode, decode, save.

Representation (the same as tiktoken's): ``mergeable_ranks: dict[bytes, int]`` maps every token's
bytes to its rank, and the rank IS the token id. A trained tokenizer has byte ``b`` -> id ``b``
and its i-th merge -> id ``256 + i``; special tokens take the ids after that. Imported
vocabularies keep their ids (GPT-2's byte tokens are in its bytes_to_unicode order, not 0..255).
``merges`` keeps the ordered list of pairs too, so GPT-2 / Hugging Face files export exactly.

Encoding (identical to tiktoken, so ``to_tiktoken()`` gives the same ids by construction):
1. special tokens in ``allowed_special`` are cut out of the text (see ``base`` for the rules);
2. the rest is split into chunks by the pre-tokenization regex (``pretokenize``; with the
   built-in patterns, the same chunks as tiktoken's regex engine whatever Unicode version the
   ``regex`` package knows);
3. a chunk whose bytes are a token is that token; otherwise start from its single bytes and
   repeatedly join the adjacent pair whose concatenation has the lowest rank (leftmost on ties)
   until no adjacent pair forms a token.
Chunk -> ids results are cached (up to ``ENCODE_CACHE_SIZE`` chunks, then the cache restarts),
because natural text repeats the same words over and over. ``backend="tiktoken"`` runs the same
algorithm in tiktoken's Rust code; ``"auto"`` (the default) uses it whenever tiktoken is installed.

Training (``BPETokenizer.train``): count the unique chunks of the corpus once, then repeat: merge
the most frequent adjacent pair of tokens into a new token. Pair counts are updated incrementally:
an index pair -> chunks containing it means each merge touches only the chunks where the pair
occurs, and a max-heap with lazy deletion (stale counts are re-pushed when popped) finds the next
pair without a full scan. Ties go to the lexicographically smallest pair of byte strings
``(left bytes, right bytes)``, so training is deterministic. A pair whose concatenation is already
a token (made earlier from another split, e.g. "a"+"bc" after "ab"+"c") is skipped: one id per byte
string is what the rank representation needs, and at encode time such a pair is joined anyway.

``vocab_size`` counts everything: 256 byte tokens + merges + special tokens.
"""

from __future__ import annotations

import heapq
import operator
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gptlab.errors import GptlabError
from gptlab.io import read_error
from gptlab.tokenizers.base import (
    EOT,
    MAX_VOCAB_SIZE,
    SpecialSet,
    Tokenizer,
    check_disallowed,
    check_header,
    check_special_tokens,
    make_header,
    resolve_special,
)
from gptlab.tokenizers.pretokenize import (
    GPT2_PATTERN,
    PATTERNS,
    TIKTOKEN_GPT2_PATTERN,
    ChunkSplitter,
    bytes_to_token_str,
    compile_pattern,
    resolve_pattern,
    special_token_regex,
    token_str_to_bytes,
)

if TYPE_CHECKING:
    import tiktoken

DEFAULT_VOCAB_SIZE = 4096
DEFAULT_MIN_FREQUENCY = 2  # a pair seen once would only memorize one word
NUM_BYTES = 256
ENCODE_CACHE_SIZE = 1 << 16  # chunks; natural text has far fewer distinct words
MAX_CACHED_CHUNK = 256  # characters; a longer chunk (a whitespace run, a DNA string) is not cached
LONG_CHUNK = 64  # bytes: from here on, merge with a heap (n log n) instead of rescanning all pairs (n^2)
Backend = Literal["auto", "python", "tiktoken"]
BACKENDS = ("auto", "python", "tiktoken")

_SINGLE_BYTES = [bytes([b]) for b in range(NUM_BYTES)]


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer; build one with ``train``, ``load`` or ``gptlab.tokenizers.interop``."""

    type_name = "bpe"

    def __init__(
        self,
        mergeable_ranks: dict[bytes, int],
        special_tokens: dict[str, int] | None = None,
        pattern: str = "gpt2",
        merges: Sequence[tuple[bytes, bytes]] | None = None,
        source: str = "BPE tokenizer",
    ):
        """``merges=None`` derives them from the ranks (each token's split when BPE builds it)."""
        try:
            self.pattern = resolve_pattern(pattern)
        except GptlabError as e:
            raise GptlabError(f"{source}: {e}") from None
        self.mergeable_ranks = _check_ranks(mergeable_ranks, source)
        self._special_tokens = check_special_tokens(dict(special_tokens or {}), source)
        clash = {t: i for t, i in self._special_tokens.items() if i in self._rank_ids}
        if clash:
            raise GptlabError(f"{source}: special token ids {clash} are already ids of ordinary tokens")
        self.merges = (
            derive_merges(self.mergeable_ranks, source)
            if merges is None
            else _check_merges(merges, self, source)
        )
        self._decoder = {rank: token for token, rank in self.mergeable_ranks.items()}
        self._decoder.update({i: t.encode("utf-8") for t, i in self._special_tokens.items()})
        self._vocab_size = max(self._decoder) + 1
        self._split = ChunkSplitter(self.pattern)
        self._checks_coverage = self.pattern not in PATTERNS.values()
        self._cache: dict[str, tuple[int, ...]] = {}
        self._tiktoken: tiktoken.Encoding | None = None

    @property
    def _rank_ids(self) -> set[int]:
        return set(self.mergeable_ranks.values())

    # --- training -------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str | Iterable[str],
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        special_tokens: Sequence[str] = (EOT,),
        pattern: str = "gpt2",
        min_frequency: int = DEFAULT_MIN_FREQUENCY,
        verbose: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text`` (a string or an
        iterable of strings, e.g. documents). Special-token text in the corpus is cut out before
        counting, so it never becomes part of an ordinary token. Stops early, with a warning, when
        no pair occurs ``min_frequency`` times any more; the tokenizer is then smaller but valid."""
        specials = list(special_tokens)
        if any(not isinstance(t, str) or not t for t in specials) or len(set(specials)) != len(specials):
            raise GptlabError(f"special_tokens must be distinct non-empty strings, got {specials!r}")
        if not isinstance(vocab_size, int) or vocab_size < NUM_BYTES + len(specials):
            raise GptlabError(
                f"vocab_size must be at least {NUM_BYTES + len(specials)} (256 byte tokens + "
                f"{len(specials)} special tokens), got {vocab_size!r}"
            )
        if min_frequency < 1:
            raise GptlabError(f"min_frequency must be at least 1, got {min_frequency}")
        pattern = resolve_pattern(pattern)
        chunk_counts = count_chunks([text] if isinstance(text, str) else text, pattern, specials)
        num_merges = vocab_size - NUM_BYTES - len(specials)
        merges = train_merges(chunk_counts, num_merges, min_frequency, verbose)
        if len(merges) < num_merges:
            warnings.warn(
                f"BPE training stopped after {len(merges)} of {num_merges} merges: no pair of tokens occurs "
                f"{min_frequency} times any more (corpus too small for vocab_size={vocab_size}); "
                f"the tokenizer has vocab_size={NUM_BYTES + len(merges) + len(specials)}",
                stacklevel=2,
            )
        ranks = {token: b for b, token in enumerate(_SINGLE_BYTES)}
        for left, right in merges:
            ranks[left + right] = len(ranks)
        special_ids = {token: len(ranks) + i for i, token in enumerate(specials)}
        return cls(ranks, special_ids, pattern, merges)

    # --- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        try:
            return self._decoder[token_id]
        except (KeyError, TypeError):
            raise GptlabError(f"unknown token id {token_id!r} (vocab_size is {self._vocab_size})") from None

    # --- encoding -------------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = (),
        backend: Backend = "auto",
    ) -> list[int]:
        """Text -> ids. Special-token text becomes a special id only if listed in ``allowed_special``
        (default: never); see ``gptlab.tokenizers.base``. ``backend``: "python", "tiktoken" (same
        ids, faster) or "auto" (tiktoken when available)."""
        if not isinstance(text, str):
            raise GptlabError(f"encode expects a str, got {type(text).__name__}")
        allowed, disallowed = resolve_special(self._special_tokens, allowed_special, disallowed_special)
        check_disallowed(text, disallowed)
        check_utf8(text)
        encoding = self._backend_encoding(backend)
        if encoding is not None:
            ids = encoding.encode(text, allowed_special=allowed, disallowed_special=())
            if self._checks_coverage and len(encoding.decode_bytes(ids)) != len(text.encode("utf-8")):
                raise self._coverage_error()
            return ids
        if not allowed:
            return self._encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in special_token_regex(allowed).finditer(text):
            ids.extend(self._encode_ordinary(text[start : match.start()]))
            ids.append(self._special_tokens[match.group()])
            start = match.end()
        ids.extend(self._encode_ordinary(text[start:]))
        return ids

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = (),
        num_workers: int = 1,
        backend: Backend = "auto",
    ) -> list[list[int]]:
        """Encode many texts: with tiktoken in ``num_workers`` threads (its Rust code runs without
        the GIL), else in ``num_workers`` processes. Same ids as ``encode`` on each text."""
        encoding = self._backend_encoding(backend)
        if encoding is None or self._checks_coverage:
            return super().encode_batch(
                texts, allowed_special, disallowed_special, num_workers, backend=backend
            )
        if num_workers < 1:
            raise GptlabError(f"num_workers must be at least 1, got {num_workers}")
        texts = list(texts)
        allowed, disallowed = resolve_special(self._special_tokens, allowed_special, disallowed_special)
        for text in texts:
            if not isinstance(text, str):
                raise GptlabError(f"encode_batch expects strings, got {type(text).__name__}")
            check_disallowed(text, disallowed)
            check_utf8(text)
        return encoding.encode_batch(
            texts, num_threads=num_workers, allowed_special=allowed, disallowed_special=()
        )

    def encode_file(
        self,
        path: str | os.PathLike,
        allowed_special: SpecialSet = frozenset(),
        num_workers: int = 1,
        backend: Backend = "auto",
    ) -> list[int]:
        """Encode a big UTF-8 text file in ``num_workers`` parallel pieces; the ids equal
        ``encode(text)`` because pieces are cut only where every built-in pattern cuts a chunk
        anyway (at a newline between two non-space characters) and never inside a special token."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GptlabError(f"input not found: {path}") from None
        except (UnicodeDecodeError, IsADirectoryError) as e:
            raise GptlabError(f"cannot read {path} as UTF-8 text: {e}") from None
        except OSError as e:  # permission denied, I/O error
            raise read_error(e, "input", path) from None
        pieces = self._split_for_workers(text, num_workers, allowed_special)
        ids: list[int] = []
        for piece_ids in self.encode_batch(pieces, allowed_special, (), num_workers, backend):
            ids.extend(piece_ids)
        return ids

    def _split_for_workers(self, text: str, num_workers: int, allowed_special: SpecialSet) -> list[str]:
        allowed, _ = resolve_special(self._special_tokens, allowed_special, ())
        if num_workers < 2 or self._checks_coverage or any("\n" in t for t in allowed):
            return [text]
        target = max(1, len(text) // (num_workers * 4))
        pieces, start = [], 0
        cut_at = compile_pattern(r"(?<=\S\n)(?=\S)")
        while start < len(text):
            match = cut_at.search(text, start + target) if start + target < len(text) else None
            end = match.start() if match else len(text)
            pieces.append(text[start:end])
            start = end
        return pieces

    def _encode_ordinary(self, text: str) -> list[int]:
        """Pure-Python encoding of text without special tokens (the reference path)."""
        chunks = self._split(text)
        if self._checks_coverage and sum(map(len, chunks)) != len(text):
            raise self._coverage_error()
        cache = self._cache
        get = cache.get
        ids: list[int] = []
        extend = ids.extend
        for chunk in chunks:
            piece = get(chunk)
            if piece is None:
                piece = self._encode_chunk(chunk)
            extend(piece)
        return ids

    def _coverage_error(self) -> GptlabError:
        return GptlabError(
            f"the pre-tokenization pattern {self.pattern!r} skips characters of the text, so they "
            "would be lost: a pattern must match every character"
        )

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        data = chunk.encode("utf-8")
        ranks = self.mergeable_ranks
        rank = ranks.get(data)
        piece = (rank,) if rank is not None else tuple(ranks[part] for part in bpe_merge(data, ranks))
        if len(chunk) <= MAX_CACHED_CHUNK:
            if len(self._cache) >= ENCODE_CACHE_SIZE:
                self._cache.clear()  # simplest bound; the working set refills in a few sentences
            self._cache[chunk] = piece
        return piece

    def _backend_encoding(self, backend: Backend) -> tiktoken.Encoding | None:
        if backend not in BACKENDS:
            raise GptlabError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "python":
            return None
        try:
            return self.to_tiktoken()
        except GptlabError:
            if backend == "tiktoken":
                raise
            return None

    def to_tiktoken(self) -> tiktoken.Encoding:
        """A ``tiktoken.Encoding`` with our ranks, pattern and special tokens (built once, no download)."""
        if self._tiktoken is None:
            try:
                import tiktoken
            except ImportError:
                raise GptlabError(
                    "the tiktoken backend needs the tiktoken package (pip install tiktoken)"
                ) from None
            pattern = TIKTOKEN_GPT2_PATTERN if self.pattern == GPT2_PATTERN else self.pattern
            try:
                self._tiktoken = tiktoken.Encoding(
                    name=f"gptlab-bpe-{self._vocab_size}",
                    pat_str=pattern,
                    mergeable_ranks=self.mergeable_ranks,
                    special_tokens=self._special_tokens,
                )
            except ValueError as e:  # a custom regex tiktoken's engine does not support
                raise GptlabError(
                    f"tiktoken cannot use this tokenizer (pattern {self.pattern!r}): {e}"
                ) from None
        return self._tiktoken

    # --- decoding -------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        decoder = self._decoder
        ids = list(ids)
        try:
            return b"".join(map(decoder.__getitem__, ids))
        except (KeyError, TypeError):  # an unknown id, or ids such as 0-d tensors that hash by identity
            return b"".join(self.token_bytes(_as_int(i)) for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- serialization --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        vocab: list[str | None] = [None] * (max(self._rank_ids) + 1)
        for token, rank in self.mergeable_ranks.items():
            vocab[rank] = bytes_to_token_str(token)
        return {
            **make_header(self.type_name),
            "pattern": self.pattern,
            "vocab": vocab,
            "merges": [f"{bytes_to_token_str(a)} {bytes_to_token_str(b)}" for a, b in self.merges],
            "special_tokens": dict(sorted(self._special_tokens.items(), key=lambda kv: kv[1])),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "tokenizer dict") -> BPETokenizer:
        check_header(data, source, cls.type_name)
        for field, kind in (("pattern", str), ("vocab", list), ("merges", list), ("special_tokens", dict)):
            if not isinstance(data.get(field), kind):
                raise GptlabError(
                    f"{source}: missing or invalid field {field!r} (expected a {kind.__name__})"
                )
        ranks: dict[bytes, int] = {}
        for rank, token in enumerate(data["vocab"]):
            if token is None:
                continue
            if not isinstance(token, str) or not token:
                raise GptlabError(f"{source}: field 'vocab' entry {rank} must be a non-empty string or null")
            ranks[token_str_to_bytes(token, f"{source}, field 'vocab' entry {rank}")] = rank
        if len(ranks) != sum(t is not None for t in data["vocab"]):
            raise GptlabError(f"{source}: field 'vocab' lists the same token twice")
        merges = [_parse_merge(m, i, source) for i, m in enumerate(data["merges"])]
        specials = check_special_tokens(data["special_tokens"], source)
        return cls(ranks, specials, data["pattern"], merges, source=source)


# --- the BPE algorithm ----------------------------------------------------------------------------


def bpe_merge(data: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
    """Split ``data`` into tokens: start from single bytes, join the adjacent pair whose
    concatenation has the lowest rank (the leftmost on ties) while one exists (below ``max_rank``)."""
    if len(data) >= LONG_CHUNK:
        return _bpe_merge_heap(data, ranks, max_rank)
    parts = [data[i : i + 1] for i in range(len(data))]
    get = ranks.get
    limit = float("inf") if max_rank is None else max_rank
    while len(parts) > 1:
        best_rank, best_i = limit, -1
        for i in range(len(parts) - 1):
            rank = get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_rank, best_i = rank, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _bpe_merge_heap(data: bytes, ranks: dict[bytes, int], max_rank: int | None) -> list[bytes]:
    """Same result as the rescanning loop, for long chunks: a heap of (rank, start) over a linked
    list of parts. Start offsets never move, so the smallest start is the leftmost pair."""
    n = len(data)
    parts: list[bytes | None] = [data[i : i + 1] for i in range(n)]
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    get = ranks.get
    limit = float("inf") if max_rank is None else max_rank

    def pair_rank(i: int, j: int) -> int | None:
        rank = get(parts[i] + parts[j])
        return rank if rank is not None and rank < limit else None

    heap = [(r, i) for i in range(n - 1) if (r := pair_rank(i, i + 1)) is not None]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if parts[i] is None or j >= n or pair_rank(i, j) != rank:
            continue  # stale: one side was merged since this entry was pushed
        parts[i] = parts[i] + parts[j]
        parts[j] = None
        nxt[i] = nxt[j]
        if nxt[i] < n:
            prv[nxt[i]] = i
        if prv[i] >= 0 and (r := pair_rank(prv[i], i)) is not None:
            heapq.heappush(heap, (r, prv[i]))
        if nxt[i] < n and (r := pair_rank(i, nxt[i])) is not None:
            heapq.heappush(heap, (r, i))
    return [p for p in parts if p is not None]


def derive_merges(ranks: dict[bytes, int], source: str = "BPE tokenizer") -> list[tuple[bytes, bytes]]:
    """The merge that builds each multi-byte token, in rank order: BPE on the token's own bytes
    using only lower ranks must end in exactly two parts (as tiktoken / minbpe recover GPT-4's)."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = bpe_merge(token, ranks, max_rank=rank)
        if len(parts) != 2:
            raise GptlabError(
                f"{source}: token {token!r} (id {rank}) cannot be built by merging two lower-ranked "
                "tokens, so this is not a BPE vocabulary"
            )
        merges.append((parts[0], parts[1]))
    return merges


def count_chunks(texts: Iterable[str], pattern: str, special_tokens: Sequence[str] = ()) -> Counter[bytes]:
    """How often each pre-tokenized chunk (as UTF-8 bytes) occurs, special-token text cut out."""
    split = ChunkSplitter(pattern)
    specials = special_token_regex(frozenset(special_tokens)) if special_tokens else None
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise GptlabError(f"training text must be str, got {type(text).__name__}")
        check_utf8(text)
        for piece in specials.split(text) if specials else (text,):
            counts.update(split(piece))
    return Counter({chunk.encode("utf-8"): n for chunk, n in counts.items()})


def train_merges(
    chunk_counts: Counter[bytes], num_merges: int, min_frequency: int = 1, verbose: bool = False
) -> list[tuple[bytes, bytes]]:
    """Learn up to ``num_merges`` merges (see the module docstring for the algorithm)."""
    from tqdm.auto import tqdm

    words = [list(chunk) for chunk in chunk_counts]  # each chunk as token ids, initially its bytes
    counts = list(chunk_counts.values())
    token_bytes = list(_SINGLE_BYTES)  # id -> bytes
    known = set(token_bytes)
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks that (may) contain it
    for w, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += counts[w]
            where[pair].add(w)
    # max-heap by count via negation; then the smallest (left bytes, right bytes) wins a tie
    heap = [(-n, token_bytes[a], token_bytes[b], (a, b)) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[bytes, bytes]] = []
    progress = tqdm(total=num_merges, desc="BPE merges", unit="merge", disable=not verbose)
    while len(merges) < num_merges and heap:
        neg_count, left, right, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg_count:  # stale entry: re-push if the count went down, drop if it is 0
            if 0 < count < -neg_count:
                heapq.heappush(heap, (-count, left, right, pair))
            continue
        if count < min_frequency:
            break  # the heap top has the highest count: nothing else qualifies either
        merged = left + right
        if merged in known:
            del pair_counts[pair]  # see the module docstring: never a second id for the same bytes
            continue
        new_id = len(token_bytes)
        token_bytes.append(merged)
        known.add(merged)
        merges.append((left, right))
        _apply_merge(pair, new_id, words, counts, pair_counts, where, heap, token_bytes)
        progress.update()
    progress.close()
    return merges


def _apply_merge(
    pair: tuple[int, int],
    new_id: int,
    words: list[list[int]],
    counts: list[int],
    pair_counts: dict[tuple[int, int], int],
    where: dict[tuple[int, int], set[int]],
    heap: list,
    token_bytes: list[bytes],
) -> None:
    """Replace ``pair`` by ``new_id`` in every chunk containing it and update the pair counts."""
    a, b = pair
    delta: dict[tuple[int, int], int] = defaultdict(int)
    for w in where.pop(pair):
        word = words[w]
        n = len(word)
        new_word: list[int] = []
        i = 0
        while i < n:
            if word[i] == a and i + 1 < n and word[i + 1] == b:
                new_word.append(new_id)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        if len(new_word) == n:
            continue  # a stale index entry: this chunk lost the pair to an earlier merge
        count = counts[w]
        for p in zip(word, word[1:]):
            delta[p] -= count
        for p in zip(new_word, new_word[1:]):
            delta[p] += count
            where[p].add(w)
        words[w] = new_word
    for p, d in delta.items():
        if d == 0:
            continue
        total = pair_counts[p] + d
        if total:
            pair_counts[p] = total
        else:
            del pair_counts[p]
        if d > 0:  # a grown count needs a fresh entry; shrunk ones are fixed lazily when popped
            heapq.heappush(heap, (-total, token_bytes[p[0]], token_bytes[p[1]], p))


# --- validation helpers ---------------------------------------------------------------------------


def check_utf8(text: str) -> None:
    """Refuse strings that cannot be UTF-8 encoded (lone surrogates, e.g. from bad JSON or files
    read with errors="surrogateescape"): they have no bytes, so no byte-level token."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GptlabError(
            f"text cannot be encoded as UTF-8: {e.reason} {text[e.start]!r} at character {e.start} "
            "(a lone surrogate; fix the text, e.g. decode your input with errors='replace')"
        ) from None


def _check_ranks(ranks: Any, source: str) -> dict[bytes, int]:
    if not isinstance(ranks, dict) or not ranks:
        raise GptlabError(f"{source}: the vocabulary is empty")
    for token, rank in ranks.items():
        if not isinstance(token, bytes) or not token:
            raise GptlabError(f"{source}: token {token!r} must be non-empty bytes")
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < MAX_VOCAB_SIZE:
            raise GptlabError(
                f"{source}: token {token!r} has invalid id {rank!r} (ids are 0 to {MAX_VOCAB_SIZE - 1:,})"
            )
    if len(set(ranks.values())) != len(ranks):
        raise GptlabError(f"{source}: two tokens share an id")
    missing = [b for b in range(NUM_BYTES) if _SINGLE_BYTES[b] not in ranks]
    if missing:
        raise GptlabError(
            f"{source}: byte-level BPE needs a token for each of the 256 bytes; {len(missing)} are missing "
            f"(first: 0x{missing[0]:02x})"
        )
    return dict(ranks)


def _check_merges(
    merges: Sequence[tuple[bytes, bytes]], tok: BPETokenizer, source: str
) -> list[tuple[bytes, bytes]]:
    ranks = tok.mergeable_ranks
    for i, (left, right) in enumerate(merges):
        for part in (left, right, left + right):
            if part not in ranks:
                raise GptlabError(
                    f"{source}: merge {i} ({left!r}, {right!r}): {part!r} is not in the vocabulary"
                )
    return [(left, right) for left, right in merges]


def _parse_merge(merge: Any, index: int, source: str) -> tuple[bytes, bytes]:
    parts = merge.split(" ") if isinstance(merge, str) else merge
    if not isinstance(parts, list) or len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
        raise GptlabError(f"{source}: field 'merges' entry {index} must be 'LEFT RIGHT', got {merge!r}")
    where = f"{source}, field 'merges' entry {index}"
    return token_str_to_bytes(parts[0], where), token_str_to_bytes(parts[1], where)


def _as_int(token_id: Any) -> Any:
    """numpy / torch integers -> int; anything else (floats, strings) is left for the error."""
    try:
        return operator.index(token_id)
    except TypeError:
        return token_id
