"""The interface every gptlab tokenizer implements, and the file format they share.

A tokenizer maps text to a list of integer ids and back. Every tokenizer has:

- ``vocab_size``: the number of ids (all ids are in ``range(vocab_size)``);
- ``special_tokens``: ``{text: id}`` for tokens such as ``<|endoftext|>`` that are never produced
  from ordinary text unless the caller allows it;
- ``eot_id``: the id of ``<|endoftext|>``, or None if the tokenizer has none;
- ``encode`` / ``decode`` / ``decode_bytes`` / ``token_bytes`` / ``encode_batch``;
- ``to_dict`` / ``from_dict`` and ``save`` / ``load``, one JSON file
  ``{"format": "gptlab-tokenizer", "version": 1, "type": ..., ...}``.

Special tokens, tiktoken-style but with a safer-for-corpora default:
``encode(text, allowed_special=set(), disallowed_special=())``.

- ``allowed_special``: the special tokens whose text becomes its special id: a set of token
  strings, or ``"all"``. Default: none, so text typed by a user or read from a corpus can never
  inject a control token such as ``<|endoftext|>``.
- ``disallowed_special``: special tokens whose text, if found and not allowed, raises a
  GptlabError (a set, or ``"all"`` meaning every special token not in ``allowed_special``).
  Default: none, so special-token text that is not allowed is encoded as ordinary text (its
  characters), which is what you want for training data. Pass ``disallowed_special="all"`` for
  tiktoken's behaviour (refuse such text so that it is handled explicitly).

Threat model for ``load``: a tokenizer file may come from anyone. It is JSON read without
executing anything; every field is type-checked and a malformed file gives a GptlabError naming
the file and the field, never a crash deep inside encode.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any, ClassVar, Literal

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, read_json

FORMAT_NAME = "gptlab-tokenizer"
FORMAT_VERSION = 1
EOT = "<|endoftext|>"
# Ids must stay below this (GPTConfig's vocab_size ceiling, 16.7M; the largest real vocabularies
# hold a few hundred thousand tokens): a file giving a special token the id 2^32 would otherwise
# load and then break whatever sizes a table by vocab_size (a model, a token histogram, uint32 data).
MAX_VOCAB_SIZE = 2**24

SpecialSet = Collection[str] | Literal["all"]


class Tokenizer(ABC):
    """Abstract base: subclasses implement the abstract members and set ``type_name``."""

    type_name: ClassVar[str]  # the "type" field of the saved JSON ("bpe", "char")

    # --- vocabulary -----------------------------------------------------------------------------

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""

    @property
    @abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """``{token text: id}`` for the special tokens (a copy)."""

    @property
    def eot_id(self) -> int | None:
        """Id of ``<|endoftext|>``, or None if this tokenizer has no such token."""
        return self.special_tokens.get(EOT)

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The UTF-8 bytes one id stands for (a special token's text encoded as UTF-8).
        An id outside ``range(vocab_size)`` raises a GptlabError."""

    # --- encoding -------------------------------------------------------------------------------

    @abstractmethod
    def encode(
        self, text: str, allowed_special: SpecialSet = frozenset(), disallowed_special: SpecialSet = ()
    ) -> list[int]:
        """Text -> ids. See the module docstring for the special-token arguments."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; bytes that are not valid UTF-8 (a token cut mid-character) become U+FFFD."""

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> the exact bytes they stand for."""
        return b"".join(self.token_bytes(int(i)) for i in ids)

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: SpecialSet = frozenset(),
        disallowed_special: SpecialSet = (),
        num_workers: int = 1,
        **encode_kwargs: Any,
    ) -> list[list[int]]:
        """Encode many texts, in ``num_workers`` processes when > 1 (each gets a copy of the
        tokenizer via ``to_dict``). The result is the same as ``[encode(t) for t in texts]``;
        ``encode_kwargs`` go to ``encode`` (e.g. ``backend`` for BPE)."""
        texts = list(texts)
        if num_workers < 1:
            raise GptlabError(f"num_workers must be at least 1, got {num_workers}")
        if num_workers == 1 or len(texts) < 2:
            return [self.encode(t, allowed_special, disallowed_special, **encode_kwargs) for t in texts]
        encode = partial(
            _encode_in_worker,
            allowed_special=allowed_special if allowed_special == "all" else frozenset(allowed_special),
            disallowed_special=disallowed_special
            if disallowed_special == "all"
            else frozenset(disallowed_special),
            encode_kwargs=encode_kwargs,
        )
        workers = min(num_workers, len(texts))
        # A few chunks per worker balances uneven text lengths without per-text IPC overhead.
        chunksize = max(1, len(texts) // (workers * 4))
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(type(self), self.to_dict())
        ) as pool:
            return list(pool.map(encode, texts, chunksize=chunksize))

    # --- serialization --------------------------------------------------------------------------

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict with the ``format``, ``version`` and ``type`` header."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any], source: str = "tokenizer dict") -> Tokenizer:
        """Rebuild from ``to_dict()`` output; ``source`` (e.g. the file path) is named in errors."""

    def save(self, path: str | os.PathLike) -> None:
        """Write ``to_dict()`` as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer saved with ``save``; a wrong or corrupt file raises a GptlabError naming it."""
        data = read_json(path, "tokenizer file")
        source = f"tokenizer file {os.fspath(path)}"
        check_header(data, source, cls.type_name)
        return cls.from_dict(data, source=source)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={len(self.special_tokens)})"
        )


# --- helpers shared by the tokenizers -------------------------------------------------------------


def make_header(type_name: str) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "type": type_name}


def check_header(data: Any, source: str, type_name: str | None = None) -> str:
    """Validate the ``format`` / ``version`` / ``type`` fields; return the type."""
    if not isinstance(data, dict):
        raise GptlabError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT_NAME:
        raise GptlabError(
            f"{source}: field 'format' is {data.get('format')!r}, expected {FORMAT_NAME!r} "
            "(is this a gptlab tokenizer? Hugging Face / tiktoken / GPT-2 files are read with "
            "gptlab.tokenizers.interop)"
        )
    if data.get("version") != FORMAT_VERSION:
        raise GptlabError(
            f"{source}: field 'version' is {data.get('version')!r}, "
            f"this gptlab reads version {FORMAT_VERSION}"
        )
    found = data.get("type")
    if not isinstance(found, str):
        raise GptlabError(f"{source}: missing or invalid field 'type' (expected a string such as 'bpe')")
    if type_name is not None and found != type_name:
        raise GptlabError(f"{source}: field 'type' is {found!r}, expected {type_name!r}")
    return found


def check_special_tokens(data: Any, source: str, field: str = "special_tokens") -> dict[str, int]:
    """Validate a ``{text: id}`` mapping read from a file."""
    if not isinstance(data, dict):
        raise GptlabError(f"{source}: field {field!r} must be an object {{token: id}}")
    for token, token_id in data.items():
        if not token or not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise GptlabError(f"{source}: field {field!r}: {token!r} must map to a non-negative integer id")
        if token_id >= MAX_VOCAB_SIZE:
            raise GptlabError(
                f"{source}: field {field!r}: {token!r} has id {token_id}, over the largest id "
                f"{MAX_VOCAB_SIZE - 1:,} a gptlab vocabulary may use"
            )
    if len(set(data.values())) != len(data):
        raise GptlabError(f"{source}: field {field!r} gives the same id to two tokens")
    return dict(data)


def resolve_special(
    special_tokens: Collection[str], allowed_special: SpecialSet, disallowed_special: SpecialSet
) -> tuple[frozenset[str], frozenset[str]]:
    """``(allowed, disallowed)`` as sets of known special tokens; an unknown name raises."""
    known = frozenset(special_tokens)
    allowed = known if allowed_special == "all" else _known(allowed_special, known, "allowed_special")
    if disallowed_special == "all":
        disallowed = known - allowed
    else:
        disallowed = _known(disallowed_special, known, "disallowed_special") - allowed
    return allowed, disallowed


def _known(names: Any, known: frozenset[str], arg: str) -> frozenset[str]:
    if isinstance(names, str):  # a bare string would be read as a set of characters
        raise GptlabError(f"{arg} must be a set of special tokens or 'all', got the string {names!r}")
    names = frozenset(names)
    unknown = names - known
    if unknown:
        raise GptlabError(
            f"{arg}: {sorted(unknown)} not special tokens of this tokenizer "
            f"(it has {sorted(known) or 'none'})"
        )
    return names


def check_disallowed(text: str, disallowed: frozenset[str]) -> None:
    """Raise if ``text`` contains the text of a disallowed special token."""
    for token in sorted(disallowed):
        position = text.find(token)
        if position >= 0:
            raise GptlabError(
                f"text contains the special token {token!r} at character {position}; pass "
                f"allowed_special={{{token!r}}} (or 'all') to encode it as its special id, or leave "
                "disallowed_special empty to encode it as ordinary text"
            )


# The tokenizer of an encode_batch worker process, built once per process by _init_worker.
_WORKER_TOKENIZER: Tokenizer | None = None


def _init_worker(cls: type[Tokenizer], data: dict[str, Any]) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = cls.from_dict(data)


def _encode_in_worker(
    text: str, allowed_special: SpecialSet, disallowed_special: SpecialSet, encode_kwargs: dict[str, Any]
) -> list[int]:
    assert _WORKER_TOKENIZER is not None, "worker not initialized"
    return _WORKER_TOKENIZER.encode(text, allowed_special, disallowed_special, **encode_kwargs)
