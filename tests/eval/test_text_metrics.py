"""Exact match, and the text-metric names other modules import from gptlab.eval.text_metrics."""

from __future__ import annotations

import pytest

from gptlab.eval import text_metrics
from gptlab.eval.text_metrics import exact_match, normalize_text


@pytest.mark.parametrize(
    "pred, ref, ignore_case, expected",
    [
        ("  Paris \n", "Paris", False, True),  # stripped
        ("New  \t York", "New York", False, True),  # whitespace runs collapse
        ("Paris", "paris", False, False),
        ("Paris", "paris", True, True),
        ("STRASSE", "straße", True, True),  # case-folding, not just lower()
        ("Paris.", "Paris", True, False),  # punctuation is kept
        ("", "   ", False, True),
        ("New York", "NewYork", True, False),
    ],
)
def test_exact_match(pred, ref, ignore_case, expected):
    assert exact_match(pred, ref, ignore_case=ignore_case) is expected


def test_normalize_text():
    assert normalize_text("  A\n b  ") == "A b"
    assert normalize_text("  A\n b  ", ignore_case=True) == "a b"


def test_every_exported_name_resolves():
    for name in ["corpus_bleu", "sentence_bleu", "rouge", "corpus_rouge", "distinct_n", "repetition_rate"]:
        assert name in text_metrics.__all__
    assert all(
        callable(getattr(text_metrics, name)) for name in text_metrics.__all__ if name != "ROUGE_TYPES"
    )
