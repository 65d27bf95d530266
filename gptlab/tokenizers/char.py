"""Character-level tokenizer: one token per Unicode character seen in training.

The classic shakespeare-char setup (nanoGPT's data/shakespeare_char): the vocabulary is the sorted
set of characters of the training text (65 for tinyshakespeare), so id order is code-point order
and the same text always gives the same vocabulary. Special tokens get the ids after the characters.

Unseen characters: by default ``encode`` raises a GptlabError naming the character and its
position, because a char model fed characters it never saw would silently produce junk. Train with
``unk="<unk>"`` to map them to an unknown token instead; that is lossy (decode gives ``<unk>`` back).

Saved as ``{"format": "gptlab-tokenizer", "version": 1, "type": "char", "chars": [...],
"special_tokens": {token: id}, "unk": token | null}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gptlab.errors import GptlabError
from gptlab.tokenizers.base import (
    SpecialSet,
    Tokenizer,
    check_disallowed,
    check_header,
    check_special_tokens,
    make_header,
    resolve_special,
)
from gptlab.tokenizers.pretokenize import special_token_regex


class CharTokenizer(Tokenizer):
    type_name = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Iterable[str] = (), unk: str | None = None):
        chars = list(chars)
        for ch in chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise GptlabError(f"char vocabulary entries must be single characters, got {ch!r}")
        if chars != sorted(set(chars)):
            raise GptlabError("char vocabulary must be sorted and without duplicates")
        specials = list(dict.fromkeys(special_tokens))
        if unk is not None and unk not in specials:
            specials.append(unk)
        for token in specials:
            if not isinstance(token, str) or not token:
                raise GptlabError(f"special tokens must be non-empty strings, got {token!r}")
        self.chars = chars
        self.unk = unk
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self._special_tokens = {token: len(chars) + i for i, token in enumerate(specials)}
        self._id_to_special = {i: token for token, i in self._special_tokens.items()}
        self._unk_id = None if unk is None else self._special_tokens[unk]

    @classmethod
    def train(cls, text: str | Iterable[str], special_tokens: Iterable[str] = (), unk: str | None = None):
        """Vocabulary = the sorted set of characters in ``text`` (a string or an iterable of strings)."""
        seen: set[str] = set()
        for piece in [text] if isinstance(text, str) else text:
            seen.update(piece)
        if not seen:
            raise GptlabError("cannot train a char tokenizer on empty text")
        return cls(sorted(seen), special_tokens=special_tokens, unk=unk)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self._special_tokens)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        token_id = _as_id(token_id)
        if 0 <= token_id < len(self.chars):
            return self.chars[token_id].encode("utf-8", errors="surrogatepass")
        if token_id in self._id_to_special:
            return self._id_to_special[token_id].encode("utf-8")
        raise GptlabError(f"unknown token id {token_id!r} (vocab_size is {self.vocab_size})")

    def encode(
        self, text: str, allowed_special: SpecialSet = frozenset(), disallowed_special: SpecialSet = ()
    ) -> list[int]:
        if not isinstance(text, str):
            raise GptlabError(f"encode expects a str, got {type(text).__name__}")
        allowed, disallowed = resolve_special(self._special_tokens, allowed_special, disallowed_special)
        check_disallowed(text, disallowed)
        if not allowed:
            return self._encode_ordinary(text, 0)
        ids: list[int] = []
        start = 0
        for match in special_token_regex(allowed).finditer(text):
            ids.extend(self._encode_ordinary(text[start : match.start()], start))
            ids.append(self._special_tokens[match.group()])
            start = match.end()
        ids.extend(self._encode_ordinary(text[start:], start))
        return ids

    def _encode_ordinary(self, text: str, offset: int) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[ch] for ch in text]
        except KeyError:
            pass
        ids = []
        for i, ch in enumerate(text):
            token_id = stoi.get(ch, self._unk_id)
            if token_id is None:
                raise GptlabError(
                    f"character {ch!r} (U+{ord(ch):04X}) at position {offset + i} is not in the char "
                    f"vocabulary of {len(self.chars)} characters (train with unk='<unk>' to map unseen "
                    "characters to an unknown token)"
                )
            ids.append(token_id)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        parts = []
        for token_id in ids:
            token_id = _as_id(token_id)
            if 0 <= token_id < len(self.chars):
                parts.append(self.chars[token_id])
            elif token_id in self._id_to_special:
                parts.append(self._id_to_special[token_id])
            else:
                raise GptlabError(f"unknown token id {token_id!r} (vocab_size is {self.vocab_size})")
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            **make_header(self.type_name),
            "chars": list(self.chars),
            "special_tokens": dict(sorted(self._special_tokens.items(), key=lambda kv: kv[1])),
            "unk": self.unk,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "tokenizer dict") -> CharTokenizer:
        check_header(data, source, cls.type_name)
        chars = data.get("chars")
        if not isinstance(chars, list):
            raise GptlabError(f"{source}: missing or invalid field 'chars' (expected a list)")
        specials = check_special_tokens(data.get("special_tokens", {}), source)
        unk = data.get("unk")
        if unk is not None and (not isinstance(unk, str) or unk not in specials):
            raise GptlabError(f"{source}: field 'unk' must be null or one of the special tokens")
        expected = list(range(len(chars), len(chars) + len(specials)))
        if sorted(specials.values()) != expected:
            raise GptlabError(f"{source}: field 'special_tokens' must use ids {expected} (after the chars)")
        order = [t for t, _ in sorted(specials.items(), key=lambda kv: kv[1])]
        try:
            return cls(chars, special_tokens=order, unk=unk)
        except GptlabError as e:
            raise GptlabError(f"{source}: {e}") from None


def _as_id(token_id: Any) -> int:
    """An id as a plain int (accepts numpy/torch integer scalars); anything else is an error."""
    try:
        if isinstance(token_id, bool) or int(token_id) != token_id:
            raise TypeError
        return int(token_id)
    except (TypeError, ValueError):
        raise GptlabError(f"token ids must be integers, got {token_id!r}") from None
