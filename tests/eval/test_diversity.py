"""distinct-n and repetition rate, checked against values worked out by hand from the definitions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptlab.eval.diversity import distinct_n, ngrams, repetition_rate


def test_ngrams_are_word_windows_in_order():
    assert ngrams("a b  c\nd", 2) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert ngrams("a b", 3) == []


@pytest.mark.parametrize(
    "texts, n, expected",
    [
        (["a a a a"], 1, 1 / 4),  # one distinct of four
        (["a a a a"], 2, 1 / 3),  # "a a" three times
        (["a b c d"], 3, 1.0),
        (["a b", "a b"], 1, 2 / 4),  # pooled over the set: a, b, a, b
        (["a b c", "b c d"], 2, 3 / 4),  # ab, bc, bc, cd
        (["the cat", "sat on the mat"], 1, 5 / 6),  # "the" twice
        (["a b"], 3, 0.0),  # too short for any trigram
        ([], 1, 0.0),
        ([""], 1, 0.0),
    ],
)
def test_distinct_n_by_hand(texts, n, expected):
    assert distinct_n(texts, n) == pytest.approx(expected)


def test_distinct_n_takes_a_single_string_as_one_text():
    assert distinct_n("a a b", 1) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("a a a a", 1, 3 / 4),  # every "a" after the first repeats
        ("a b a b a b", 2, 3 / 5),  # ab ba ab ba ab: the last three repeat
        ("the cat sat on the mat", 1, 1 / 6),  # the second "the"
        ("the cat sat on the mat", 2, 0.0),
        ("", 1, 0.0),
        ("a", 2, 0.0),
    ],
)
def test_repetition_rate_by_hand(text, n, expected):
    assert repetition_rate(text, n) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=20).map(" ".join), st.integers(1, 4))
def test_repetition_rate_is_one_minus_distinct_n_of_the_text(text, n):
    # each n-gram is either its first occurrence (counted by distinct-n) or a repeat
    if ngrams(text, n):
        assert repetition_rate(text, n) == pytest.approx(1 - distinct_n([text], n))
        assert 0 < distinct_n([text], n) <= 1


def test_n_must_be_positive():
    with pytest.raises(ValueError, match="n must be >= 1"):
        distinct_n(["a b"], 0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        repetition_rate("a b", -1)
