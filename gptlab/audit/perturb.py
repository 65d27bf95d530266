"""Character-level text perturbations: the typos and look-alikes a model meets in the wild or from
an adversary ("Bo5ton", "pаypal" with a Cyrillic "а").

Five kinds, after the noise models of Belinkov & Bisk (2018, "Synthetic and natural noise both
break neural machine translation") and Pruthi et al. (2019, "Combating adversarial misspellings
with robust word recognition"), plus visual look-alikes as in Eger et al. (2019, "Text processing
like humans do: visually attacking and shielding NLP systems"):

- ``swap``: exchange two adjacent, different characters ("form" -> "from"); keeps the multiset
  of characters and the length.
- ``insert``: insert a random letter at a random position; one character longer per edit.
- ``delete``: remove a character; one character shorter per edit (a text is never emptied).
- ``keyboard``: replace a key by one of its neighbours on a QWERTY keyboard (`QWERTY_NEIGHBOURS`,
  built from the staggered rows), keeping its case: the fat-finger typo.
- ``homoglyph``: replace a character by a look-alike from `HOMOGLYPHS`: Cyrillic / Greek letters
  that render identically, and ASCII digits that read as letters (o -> 0, s -> 5, l -> 1).

``rate`` is edits per character: a text of L characters gets ``rate * L`` edits, rounded
stochastically (floor, plus one with probability of the fraction), so short texts are perturbed
at the same expected rate as long ones and rate 0 is exactly the identity. Edits land on distinct
positions, capped at the number of positions a kind can edit. Every function takes a
``random.Random``, so a seed fixes the result; `perturb` derives one per text from a seed, the
kind and the rate, so a text's perturbation does not depend on which other texts are in the batch.

``alphabet`` (optional) restricts the characters an edit may introduce, e.g. to a character
tokenizer's vocabulary, which cannot encode characters it never saw: positions whose every
replacement lies outside it are left alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection

from gptlab.errors import GptlabError

KINDS = ("swap", "insert", "delete", "keyboard", "homoglyph")

QWERTY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _qwerty_neighbours() -> dict[str, frozenset[str]]:
    """Key -> the keys touching it on a staggered QWERTY layout: left and right on its row, and
    columns c, c+1 on the row above, c-1, c on the row below (each row is shifted right by about
    half a key from the one above, so "g" touches t, y, f, h, v, b)."""
    table: dict[str, set[str]] = {}
    for r, row in enumerate(QWERTY_ROWS):
        for c, key in enumerate(row):
            near = set()
            for rr, cols in ((r, (c - 1, c + 1)), (r - 1, (c, c + 1)), (r + 1, (c - 1, c))):
                if 0 <= rr < len(QWERTY_ROWS):
                    near |= {QWERTY_ROWS[rr][cc] for cc in cols if 0 <= cc < len(QWERTY_ROWS[rr])}
            table[key] = near
    return {k: frozenset(v) for k, v in table.items()}


QWERTY_NEIGHBOURS: dict[str, frozenset[str]] = _qwerty_neighbours()

# Look-alikes: Cyrillic and Greek letters drawn like the Latin ones (Unicode's confusables.txt
# lists them), then ASCII digits that read as letters. Byte-level BPE encodes all of them; a char
# tokenizer only those it saw (see ``alphabet``).
HOMOGLYPHS: dict[str, tuple[str, ...]] = {
    "a": ("а", "ɑ"),  # Cyrillic a, Latin alpha
    "c": ("с", "ϲ"),  # Cyrillic es, Greek lunate sigma
    "e": ("е",),  # Cyrillic ie
    "i": ("і", "1", "l"),  # Ukrainian i
    "j": ("ј",),
    "l": ("1", "I", "ӏ"),
    "o": ("о", "ο", "0"),  # Cyrillic o, Greek omicron, zero
    "p": ("р", "ρ"),  # Cyrillic er, Greek rho
    "s": ("ѕ", "5"),  # Cyrillic dze, five
    "x": ("х",),
    "y": ("у",),
    "A": ("А", "Α"),
    "B": ("В", "Β", "8"),
    "C": ("С",),
    "E": ("Е", "Ε"),
    "H": ("Н", "Η"),
    "I": ("І", "Ι", "1", "l"),
    "K": ("К", "Κ"),
    "M": ("М", "Μ"),
    "N": ("Ν",),
    "O": ("О", "Ο", "0"),
    "P": ("Р", "Ρ"),
    "S": ("Ѕ", "5"),
    "T": ("Т", "Τ"),
    "X": ("Х", "Χ"),
    "Z": ("Ζ", "2"),
}

INSERT_CHARS = "abcdefghijklmnopqrstuvwxyz"  # what ``insert`` draws from (typos add letters)


def n_edits(length: int, rate: float, rng: random.Random) -> int:
    """How many edits a text of ``length`` characters gets at ``rate`` edits per character: the
    expectation is exactly ``rate * length`` (stochastic rounding)."""
    if not 0.0 <= rate <= 1.0:
        raise GptlabError(f"perturbation rate must be in [0, 1] (edits per character), got {rate!r}")
    expected = rate * length
    n = math.floor(expected)
    return n + (rng.random() < expected - n)


def _allowed(options, alphabet: Collection[str] | None) -> list[str]:
    return [ch for ch in options if alphabet is None or ch in alphabet]


def _replace(text: str, n: int, rng: random.Random, choices: Callable[[str], list[str]]) -> str:
    """Replace ``n`` distinct positions, each by a random element of ``choices(char)``; positions
    with no choice are not eligible."""
    eligible = [i for i, ch in enumerate(text) if choices(ch)]
    chars = list(text)
    for i in sorted(rng.sample(eligible, min(n, len(eligible)))):
        chars[i] = rng.choice(choices(text[i]))
    return "".join(chars)


def swap(text: str, n: int, rng: random.Random) -> str:
    """Swap ``n`` non-overlapping pairs of adjacent, different characters."""
    candidates = [i for i in range(len(text) - 1) if text[i] != text[i + 1]]
    rng.shuffle(candidates)
    chars, used, done = list(text), set(), 0
    for i in candidates:
        if done == n:
            break
        if i in used or i + 1 in used:
            continue
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
        used |= {i, i + 1}
        done += 1
    return "".join(chars)


def insert(text: str, n: int, rng: random.Random, alphabet: Collection[str] | None = None) -> str:
    """Insert ``n`` random lowercase letters at random positions (in the original text)."""
    pool = _allowed(INSERT_CHARS, alphabet)
    if not pool or n <= 0:
        return text
    positions = sorted(rng.choices(range(len(text) + 1), k=n), reverse=True)
    chars = list(text)
    for p in positions:  # right to left, so earlier positions still point at the original text
        chars.insert(p, rng.choice(pool))
    return "".join(chars)


def delete(text: str, n: int, rng: random.Random) -> str:
    """Delete ``n`` characters at distinct positions, leaving at least one."""
    n = min(n, len(text) - 1)
    if n <= 0:
        return text
    gone = set(rng.sample(range(len(text)), n))
    return "".join(ch for i, ch in enumerate(text) if i not in gone)


def keyboard_choices(ch: str, alphabet: Collection[str] | None = None) -> list[str]:
    """QWERTY neighbours of ``ch`` in its case (sorted, so a seed fixes the pick); an upper-case
    letter gets upper-case letters only (with shift held, the digit row types symbols)."""
    near = sorted(QWERTY_NEIGHBOURS.get(ch.lower(), ()))
    if ch.isupper():
        near = [k.upper() for k in near if k.isalpha()]
    return _allowed(near, alphabet)


def keyboard(text: str, n: int, rng: random.Random, alphabet: Collection[str] | None = None) -> str:
    """Replace ``n`` keys (letters, digits) by a random QWERTY neighbour of the same case."""
    return _replace(text, n, rng, lambda ch: keyboard_choices(ch, alphabet))


def homoglyph(text: str, n: int, rng: random.Random, alphabet: Collection[str] | None = None) -> str:
    """Replace ``n`` characters by one of their look-alikes in `HOMOGLYPHS`."""
    return _replace(text, n, rng, lambda ch: _allowed(HOMOGLYPHS.get(ch, ()), alphabet))


def apply(kind: str, text: str, n: int, rng: random.Random, alphabet: Collection[str] | None = None) -> str:
    """``n`` edits of ``kind`` to ``text``."""
    if kind == "swap":
        return swap(text, n, rng)
    if kind == "delete":
        return delete(text, n, rng)
    if kind == "insert":
        return insert(text, n, rng, alphabet)
    if kind == "keyboard":
        return keyboard(text, n, rng, alphabet)
    if kind == "homoglyph":
        return homoglyph(text, n, rng, alphabet)
    raise GptlabError(f"unknown perturbation {kind!r}; choose from {', '.join(KINDS)}")


def perturb(
    text: str, kind: str, rate: float, seed: int = 0, alphabet: Collection[str] | None = None, index: int = 0
) -> str:
    """``text`` with ``rate`` edits per character of ``kind``; deterministic in (seed, kind, rate,
    index, text). ``index`` tells apart copies of the same text (e.g. augmentation rounds)."""
    if kind not in KINDS:
        raise GptlabError(f"unknown perturbation {kind!r}; choose from {', '.join(KINDS)}")
    # a str seed is hashed with SHA-512 by random.Random: stable across runs and processes
    rng = random.Random(f"{seed}|{kind}|{rate!r}|{index}|{text}")
    return apply(kind, text, n_edits(len(text), rate, rng), rng, alphabet)


def check_kinds(kinds) -> list[str]:
    kinds = list(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise GptlabError(
            f"unknown perturbation {bad[0] if bad else '(none)'!r}; choose from {', '.join(KINDS)}"
        )
    return kinds
