"""Pre-tokenization: cut text into chunks that BPE merges never cross, and the GPT-2 byte alphabet.

BPE runs inside each chunk, so a token never spans a word and its following punctuation, and
" dog", " dog." and " dog!" share the token " dog" instead of wasting vocabulary on variants.

- ``"gpt2"`` (default): GPT-2's split regex: contractions, an optional space plus letters, an
  optional space plus digits, an optional space plus other symbols, and whitespace runs. The
  original spelling is the fastest with the ``regex`` package; tiktoken gets its equivalent r50k
  spelling (possessive quantifiers), the fastest for its Rust engine.
- ``"gpt4"``: the cl100k_base pattern: case-insensitive contractions, a letter run may take one
  leading non-letter, digits in groups of at most 3, newlines kept apart from other whitespace.
- any other string: used as a regex (``regex`` package syntax, ``\\p{...}`` classes allowed).

The byte alphabet: GPT-2's ``bytes_to_unicode`` maps each of the 256 bytes to a printable
character (printable ASCII and Latin-1 map to themselves, the rest to U+0100 and up, so the space
byte shows as "Ġ" and newline as "Ċ"). Token files written by GPT-2, Hugging Face and gptlab store
token bytes in this form, so they are readable and never contain raw control bytes.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from gptlab.errors import GptlabError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# tiktoken's r50k_base spelling of the same pattern, faster in tiktoken's regex engine.
TIKTOKEN_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


def resolve_pattern(pattern: str) -> str:
    """A pattern name ("gpt2", "gpt4") or a regex -> the regex string (validated)."""
    if not isinstance(pattern, str) or not pattern:
        raise GptlabError(f"pattern must be 'gpt2', 'gpt4' or a regex string, got {pattern!r}")
    pattern = PATTERNS.get(pattern, pattern)
    compile_pattern(pattern)
    return pattern


@lru_cache(maxsize=16)
def compile_pattern(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise GptlabError(f"invalid pre-tokenization regex {pattern!r}: {e}") from None


def pattern_name(pattern: str) -> str | None:
    """ "gpt2" / "gpt4" if ``pattern`` is one of the built-in patterns, else None."""
    if pattern == TIKTOKEN_GPT2_PATTERN:
        return "gpt2"
    return next((name for name, p in PATTERNS.items() if p == pattern), None)


def special_token_regex(tokens: set[str] | frozenset[str]) -> regex.Pattern:
    """A regex matching any of ``tokens``, longest first so "<|a|>" wins over a prefix "<|a"."""
    return regex.compile("|".join(regex.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t))))


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (see the module docstring)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {ch: b for b, ch in bytes_to_unicode().items()}


def bytes_to_token_str(data: bytes) -> str:
    """Token bytes -> their printable GPT-2 form (b" the" -> "Ġthe")."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def token_str_to_bytes(text: str, source: str) -> bytes:
    """The inverse of ``bytes_to_token_str``; a character outside the alphabet raises, naming ``source``."""
    table = unicode_to_bytes()
    try:
        return bytes(table[ch] for ch in text)
    except (KeyError, TypeError):
        raise GptlabError(
            f"{source}: token {text!r} is not in GPT-2's byte-to-unicode form "
            "(each character must stand for one byte)"
        ) from None
