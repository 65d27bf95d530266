"""Generation quality without references: how varied, and how repetitive, generated text is.

Tokens are whitespace-separated words (``str.split()``); callers wanting another tokenization
can join their tokens with spaces.

- distinct-n (Li et al., 2016, "A Diversity-Promoting Objective Function for Neural
  Conversation Models"): the number of distinct n-grams divided by the total number of n-grams,
  pooled over a set of generations. 1.0 means no n-gram is ever repeated; it falls as a model
  recycles phrases.
- repetition rate: the share of a text's n-grams that repeat an n-gram seen earlier in the same
  text (the degenerate loops of greedy decoding, Holtzman et al., 2020, push it towards 1).
"""

from __future__ import annotations

from collections.abc import Sequence


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """The word n-grams of ``text`` in order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    words = text.split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str] | str, n: int) -> float:
    """Distinct n-grams / total n-grams over all ``texts`` (0.0 when there is no n-gram)."""
    if isinstance(texts, str):
        texts = [texts]
    all_ngrams = [g for text in texts for g in ngrams(text, n)]
    return len(set(all_ngrams)) / len(all_ngrams) if all_ngrams else 0.0


def repetition_rate(text: str, n: int) -> float:
    """Share of the n-grams of ``text`` that already occurred earlier in it (0.0 when there is none)."""
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    text_ngrams = ngrams(text, n)
    for g in text_ngrams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(text_ngrams) if text_ngrams else 0.0
