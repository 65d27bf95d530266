"""The Porter stemmer, as ROUGE uses it (for ``rouge(..., use_stemmer=True)``).

Porter, M. "An algorithm for suffix stripping." Program 14.3 (1980): 130-137, with the
deviations of NLTK's default mode (``nltk.stem.PorterStemmer()``, ``NLTK_EXTENSIONS``), which is
the stemmer Google's ``rouge-score`` calls. Those deviations, each marked "NLTK:" below, are: a
table of irregular forms, ``-ies``/``-ied`` on four-letter words, ``y -> i`` only after a
consonant, a two-letter ``vc`` counting as ``*o``, the ``-bli``/``-alli``/``-fulli``/``-logi``
rules of step 2, and words of one or two letters left alone.

A word is a lowercase string; "c" is a consonant, "v" a vowel, and the *measure* m of a stem is
the number of ``vc`` pairs in its form ``[C](VC){m}[V]`` (Porter's definition).
"""

from __future__ import annotations

from collections.abc import Callable

VOWELS = frozenset("aeiou")

# NLTK: whole words mapped straight to their stem, before any rule runs.
IRREGULAR_FORMS: dict[str, str] = {
    "sky": "sky",
    "skies": "sky",
    "dying": "die",
    "lying": "lie",
    "tying": "tie",
    "news": "news",
    "innings": "inning",
    "inning": "inning",
    "outings": "outing",
    "outing": "outing",
    "cannings": "canning",
    "canning": "canning",
    "howe": "howe",
    "proceed": "proceed",
    "exceed": "exceed",
    "succeed": "succeed",
}

# A rule: (suffix, replacement, condition on the stem left after removing the suffix).
Rule = tuple[str, str, Callable[[str], bool] | None]


def consonant_flags(word: str) -> list[bool]:
    """True where ``word[i]`` is a consonant: not a vowel, and a ``y`` only if no consonant precedes it."""
    flags: list[bool] = []
    for i, ch in enumerate(word):
        if ch in VOWELS:
            flags.append(False)
        elif ch == "y":
            flags.append(i == 0 or not flags[i - 1])
        else:
            flags.append(True)
    return flags


def measure(stem: str) -> int:
    """Porter's m: the number of vowel-run/consonant-run pairs ``vc`` in ``stem``."""
    flags = consonant_flags(stem)
    return sum(1 for prev, cur in zip(flags, flags[1:]) if not prev and cur)


def _positive_measure(stem: str) -> bool:
    return measure(stem) > 0


def _measure_above_one(stem: str) -> bool:
    return measure(stem) > 1


def _contains_vowel(stem: str) -> bool:
    return not all(consonant_flags(stem))


def _is_consonant(word: str, i: int) -> bool:
    return consonant_flags(word[: i + 1])[i]


def _ends_double_consonant(word: str) -> bool:
    """Porter's ``*d``."""
    return len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1)


def _ends_cvc(word: str) -> bool:
    """Porter's ``*o``: ends consonant-vowel-consonant, the last not w, x or y (e.g. -wil, -hop)."""
    if len(word) >= 3:
        flags = consonant_flags(word)
        if flags[-3] and not flags[-2] and flags[-1] and word[-1] not in "wxy":
            return True
    # NLTK: a two-letter word vowel + consonant counts too.
    if len(word) == 2:
        flags = consonant_flags(word)
        return not flags[0] and flags[1]
    return False


def _apply_first_rule(word: str, rules: list[Rule]) -> str:
    """Apply the first rule whose suffix ``word`` ends with; if its condition fails, stop there.

    The pseudo-suffix ``"*d"`` matches a double consonant ending (both letters are removed before
    the condition is checked, and the replacement puts one back).
    """
    for suffix, replacement, condition in rules:
        if suffix == "*d" and _ends_double_consonant(word):
            stem = word[:-2]
        elif word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
        else:
            continue
        return stem + replacement if condition is None or condition(stem) else word
    return word


def _step1a(word: str) -> str:
    # NLTK: "ties" -> "tie", not "ti".
    if word.endswith("ies") and len(word) == 4:
        return word[:-3] + "ie"
    return _apply_first_rule(
        word, [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)]
    )


def _step1b(word: str) -> str:
    # NLTK: "died" -> "die", "cried" -> "cri".
    if word.endswith("ied"):
        return word[:-3] + ("ie" if len(word) == 4 else "i")
    if word.endswith("eed"):
        stem = word[:-3]
        return stem + "ee" if measure(stem) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and _contains_vowel(word[: -len(suffix)]):
            stem = word[: -len(suffix)]
            break
    else:
        return word
    # Put the e back on -at, -bl, -iz; undouble a final double consonant; add e after a short cvc.
    return _apply_first_rule(
        stem,
        [
            ("at", "ate", None),
            ("bl", "ble", None),
            ("iz", "ize", None),
            ("*d", stem[-1], lambda _: stem[-1] not in "lsz"),
            ("", "e", lambda s: measure(s) == 1 and _ends_cvc(s)),
        ],
    )


def _step1c(word: str) -> str:
    # NLTK: y -> i only after a consonant that is not the whole stem ("happy" -> "happi", "enjoy" stays).
    return _apply_first_rule(word, [("y", "i", lambda s: len(s) > 1 and _is_consonant(s, len(s) - 1))])


def _step2(word: str) -> str:
    # NLTK: "-alli" -> "-al", then step 2 again on the result.
    if word.endswith("alli") and _positive_measure(word[:-4]):
        return _step2(word[:-4] + "al")
    rules: list[Rule] = [
        ("ational", "ate", _positive_measure),
        ("tional", "tion", _positive_measure),
        ("enci", "ence", _positive_measure),
        ("anci", "ance", _positive_measure),
        ("izer", "ize", _positive_measure),
        ("bli", "ble", _positive_measure),  # NLTK (and Porter's later versions): -bli, not -abli
        ("alli", "al", _positive_measure),
        ("entli", "ent", _positive_measure),
        ("eli", "e", _positive_measure),
        ("ousli", "ous", _positive_measure),
        ("ization", "ize", _positive_measure),
        ("ation", "ate", _positive_measure),
        ("ator", "ate", _positive_measure),
        ("alism", "al", _positive_measure),
        ("iveness", "ive", _positive_measure),
        ("fulness", "ful", _positive_measure),
        ("ousness", "ous", _positive_measure),
        ("aliti", "al", _positive_measure),
        ("iviti", "ive", _positive_measure),
        ("biliti", "ble", _positive_measure),
        ("fulli", "ful", _positive_measure),  # NLTK
        ("logi", "log", lambda _: _positive_measure(word[:-3])),  # NLTK: the measure keeps the "l"
    ]
    return _apply_first_rule(word, rules)


def _step3(word: str) -> str:
    return _apply_first_rule(
        word,
        [
            ("icate", "ic", _positive_measure),
            ("ative", "", _positive_measure),
            ("alize", "al", _positive_measure),
            ("iciti", "ic", _positive_measure),
            ("ical", "ic", _positive_measure),
            ("ful", "", _positive_measure),
            ("ness", "", _positive_measure),
        ],
    )


def _step4(word: str) -> str:
    suffixes = ("al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent")
    rules: list[Rule] = [(s, "", _measure_above_one) for s in suffixes]
    rules.append(("ion", "", lambda s: measure(s) > 1 and s[-1] in "st"))
    rules += [(s, "", _measure_above_one) for s in ("ou", "ism", "ate", "iti", "ous", "ive", "ize")]
    return _apply_first_rule(word, rules)


def _step5a(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        m = measure(stem)
        if m > 1 or (m == 1 and not _ends_cvc(stem)):
            return stem
    return word


def _step5b(word: str) -> str:
    # The measure is taken on the word with one "l" removed, as NLTK does.
    return _apply_first_rule(word, [("ll", "l", lambda _: measure(word[:-1]) > 1)])


def porter_stem(word: str) -> str:
    """Stem one word exactly as ``nltk.stem.PorterStemmer().stem(word)`` (NLTK_EXTENSIONS mode)."""
    stem = word.lower()
    if stem in IRREGULAR_FORMS:
        return IRREGULAR_FORMS[stem]
    # NLTK: the length test is on the word as given, before lowercasing.
    if len(word) <= 2:
        return stem
    for step in (_step1a, _step1b, _step1c, _step2, _step3, _step4, _step5a, _step5b):
        stem = step(stem)
    return stem
