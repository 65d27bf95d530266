"""Error analysis of classifier predictions, on hand-built predictions."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from gptlab.errors import GptlabError
from gptlab.eval.error_analysis import error_analysis, format_error_analysis, has_negation, length_buckets

LABELS = ["negative", "positive"]
# text, gold, predicted, probability of the prediction, tokens
ROWS = [
    ("a great film", 1, 1, 0.99, 3),
    ("not a great film", 0, 1, 0.97, 4),  # the surest mistake
    ("never dull", 1, 0, 0.60, 2),
    ("it is n't bad at all", 1, 1, 0.51, 6),  # the least sure right answer
    ("awful", 0, 0, 0.95, 1),
    ("I don't like it", 0, 0, 0.70, 5),
    ("no plot, no point", 0, 1, 0.88, 5),
    ("fine acting and a fine story", 1, 1, 0.80, 6),
]


def analyse(rows=ROWS, **kwargs):
    texts, gold, predicted, confidence, lengths = (list(c) for c in zip(*rows))
    return error_analysis(texts, gold, predicted, confidence, lengths, LABELS, **kwargs)


def test_lists_rank_mistakes_by_confidence_and_right_answers_by_doubt():
    result = analyse(examples=2)
    assert result["n"] == 8 and result["accuracy"] == 5 / 8
    assert [x["text"] for x in result["confident_mistakes"]] == ["not a great film", "no plot, no point"]
    assert result["confident_mistakes"][0] == {
        "text": "not a great film", "gold": "negative", "predicted": "positive", "probability": 0.97, "tokens": 4,
    }  # fmt: skip
    assert [x["text"] for x in result["unsure_correct"]] == ["it is n't bad at all", "I don't like it"]
    assert len(analyse(examples=10)["confident_mistakes"]) == 3  # all there are


def test_negation_buckets_count_the_four_words():
    assert [has_negation(t) for t, *_ in ROWS] == [False, True, True, True, False, True, True, False]
    assert not has_negation("nothing is known about notation or snow")  # words, not substrings
    assert has_negation("It ISN\u2019T good") and has_negation("No.")
    negation, plain = analyse()["by_negation"]
    assert (negation["bucket"], negation["n"], negation["correct"]) == ("negation", 5, 2)
    assert (plain["bucket"], plain["n"], plain["correct"]) == ("no negation", 3, 3)
    assert plain["interval"][1] == 1.0  # all right: the Wilson bound is exactly 1


def test_buckets_carry_wilson_intervals_as_scipy_computes_them():
    for b in analyse()["by_length"] + analyse()["by_negation"]:
        expected = binomtest(b["correct"], b["n"]).proportion_ci(confidence_level=0.95, method="wilson")
        assert b["interval"] == pytest.approx([expected.low, expected.high], abs=1e-4)
        assert b["accuracy"] == b["correct"] / b["n"]


def test_length_buckets_cut_at_quartiles_and_keep_ties_together():
    buckets = analyse()["by_length"]  # lengths 1 2 3 4 5 5 6 6: quartile cuts 2.75, 4.5, 5.25
    assert [(b["min_tokens"], b["max_tokens"], b["n"], b["correct"]) for b in buckets] == [
        (1, 2, 2, 1), (3, 4, 2, 1), (5, 5, 2, 1), (6, 6, 2, 2),
    ]  # fmt: skip
    assert buckets[0]["bucket"] == "1-2 tokens"
    same = length_buckets([7] * 5, [True, False, True, True, True])  # one length: one bucket
    assert [(b["n"], b["correct"]) for b in same] == [(5, 4)]
    assert sum(b["n"] for b in length_buckets(list(range(100)), [True] * 100, quantiles=10)) == 100


def test_bad_input_and_the_text_form():
    with pytest.raises(GptlabError, match="8 texts but 8 gold labels, 7 predictions"):
        error_analysis([r[0] for r in ROWS], [r[1] for r in ROWS], [1] * 7, [0.5] * 8, [1] * 8, LABELS)
    with pytest.raises(GptlabError, match="no predictions"):
        error_analysis([], [], [], [], [], LABELS)
    text = format_error_analysis(analyse())
    assert (
        "negation           n=5      0.400" in text and "negative -> positive 0.970  not a great film" in text
    )
