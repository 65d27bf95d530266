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

Unicode tables: the patterns ask which characters are letters (``\\p{L}``), digits (``\\p{N}``) and
spaces, and each regex engine answers from the Unicode version it was built with. The ``regex``
package may be newer than tiktoken's (and Hugging Face's) engine, so a character assigned in a
recent Unicode version (a newly encoded script) would be a letter on one side and "other" on the
other, and the chunks, hence the ids, would differ. ``ChunkSplitter`` removes that difference for
the built-in patterns: text holding such a character is split with ``\\p{L}`` / ``\\p{N}`` narrowed
or widened to tiktoken's tables (found once per process by asking tiktoken; nothing changes when
tiktoken is not installed or both agree). Other text, ASCII included, takes the plain regex. Custom
patterns are used as written, with each engine's own tables.

The byte alphabet: GPT-2's ``bytes_to_unicode`` maps each of the 256 bytes to a printable
character (printable ASCII and Latin-1 map to themselves, the rest to U+0100 and up, so the space
byte shows as "Ġ" and newline as "Ċ"). Token files written by GPT-2, Hugging Face and gptlab store
token bytes in this form, so they are readable and never contain raw control bytes.
"""

from __future__ import annotations

import array
import sys
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


class ChunkSplitter:
    """``splitter(text)`` -> the pre-tokenized chunks of ``text`` (``findall`` of the pattern), the
    same chunks as tiktoken's engine gives for the built-in patterns (see the module docstring)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.regex = compile_pattern(pattern)
        self._aligns = pattern in PATTERNS.values()

    def __call__(self, text: str) -> list[str]:
        if self._aligns and not text.isascii():
            gaps = unicode_gap_chars()
            if gaps and not gaps.isdisjoint(text):
                return compile_aligned(self.pattern).findall(text)
        return self.regex.findall(text)


UNICODE_CLASSES = ("L", "N")  # the \p{...} classes the built-in patterns use
_CLASS_REF = regex.compile(r"(?<!\\)((?:\\\\)*)\\p\{([LN])\}")


def _all_chars() -> str:
    """Every code point except the surrogates, in order."""
    code_points = array.array("I", range(0xD800))
    code_points.extend(range(0xE000, 0x110000))
    if code_points.itemsize != 4:
        return "".join(map(chr, code_points))
    return code_points.tobytes().decode("utf-32-le" if sys.byteorder == "little" else "utf-32-be")


def tiktoken_class_chars(expression: str, everything: str | None = None) -> str | None:
    """The characters tiktoken's regex engine matches with ``expression`` (e.g. ``\\p{L}``), in code
    point order, or None without tiktoken. Asks tiktoken itself: an Encoding whose pattern is the
    expression keeps the bytes of the matching characters only."""
    try:
        import tiktoken
    except ImportError:
        return None
    probe = tiktoken.Encoding(
        name="gptlab-unicode-probe",
        pat_str=expression,
        mergeable_ranks={bytes([b]): b for b in range(256)},
        special_tokens={},
    )
    matched = probe.encode_ordinary(_all_chars() if everything is None else everything)
    return bytes(matched).decode("utf-8")


@lru_cache(maxsize=1)
def unicode_gaps() -> dict[str, tuple[str, str]]:
    """Per class in ``UNICODE_CLASSES`` where they differ: ``(characters only the regex package puts
    in it, characters only tiktoken puts in it)``, each as a sorted string. Empty when the two agree
    or tiktoken is not installed. Costs about 0.2 s, once per process."""
    everything = _all_chars()
    gaps = {}
    for name in UNICODE_CLASSES:
        theirs = tiktoken_class_chars(rf"\p{{{name}}}", everything)
        if theirs is None:
            return {}
        ours = regex.sub(rf"\P{{{name}}}+", "", everything)
        if ours != theirs:
            ours_set, theirs_set = set(ours), set(theirs)
            gaps[name] = ("".join(sorted(ours_set - theirs_set)), "".join(sorted(theirs_set - ours_set)))
    return gaps


@lru_cache(maxsize=1)
def unicode_gap_chars() -> frozenset[str]:
    return frozenset("".join(a + b for a, b in unicode_gaps().values()))


def align_classes(pattern: str, gaps: dict[str, tuple[str, str]]) -> str:
    """``pattern`` with each ``\\p{L}`` / ``\\p{N}`` replaced by a nested set (``regex`` V1 syntax)
    without the characters only ``regex`` puts in the class and with those only tiktoken does."""

    def replace(match: regex.Match) -> str:
        backslashes, name = match.groups()
        if name not in gaps:
            return match.group()
        extra, missing = gaps[name]
        klass = rf"\p{{{name}}}"
        if extra:
            klass += f"--[{_char_ranges(extra)}]"
        if missing:
            klass += f"||[{_char_ranges(missing)}]"
        return f"{backslashes}[{klass}]"

    return _CLASS_REF.sub(replace, pattern)


@lru_cache(maxsize=4)
def compile_aligned(pattern: str) -> regex.Pattern:
    return regex.compile(align_classes(pattern, unicode_gaps()), flags=regex.V1)


def _char_ranges(chars: str) -> str:
    """Sorted characters -> set items such as ``\\U00000558\\U0000058b-\\U0000058c``."""
    items: list[str] = []
    code_points = [ord(ch) for ch in chars]
    start = 0
    for i in range(1, len(code_points) + 1):
        if i == len(code_points) or code_points[i] != code_points[i - 1] + 1:
            first, last = code_points[start], code_points[i - 1]
            items.append(f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}")
            start = i
    return "".join(items)


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
