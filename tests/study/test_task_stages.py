"""The task stages' own arithmetic, by hand: generation scores with paired bootstrap intervals
(tasks), the difference of two matrix cells and the "forgot" rule (forgetting)."""

from __future__ import annotations

import pytest

from gptlab.study.stages.forgetting import cell_difference, forgot_sentence
from gptlab.study.stages.tasks import generation_scores

REFS = ["the cat sat on the mat", "a dog runs in the park", "two birds sing at dawn"]


def test_perfect_outputs_score_100_and_identical_outputs_differ_by_exactly_zero():
    scores = generation_scores(REFS, REFS, REFS, resamples=50, seed=0)
    for metric in ("bleu", "chrf", "rougeL"):
        m = scores[metric]
        assert m["tuned"] == pytest.approx(100.0) and m["base"] == pytest.approx(100.0)
        assert m["tuned_ci95"] == pytest.approx([100.0, 100.0])
        assert m["diff"] == 0.0 and m["diff_ci95"] == [0.0, 0.0]  # paired: the same items each draw


def test_a_better_system_has_a_positive_paired_difference():
    wrong = ["123 456", "789 012", "345 678"]  # no character in common with the references
    scores = generation_scores(REFS, wrong, REFS, resamples=200, seed=0)
    for metric in ("bleu", "chrf", "rougeL"):
        m = scores[metric]
        assert m["base"] == pytest.approx(0.0, abs=1e-9)
        assert m["diff"] == pytest.approx(m["tuned"] - m["base"])
        assert m["diff_ci95"][0] > 0  # every resample of a perfect vs a useless system favours the first


def test_the_cell_difference_interval_adds_the_two_standard_errors():
    a = {"value": 0.8, "low": 0.7, "high": 0.9}  # half-width 0.1
    b = {"value": 0.5, "low": 0.4, "high": 0.6}
    diff, (lo, hi) = cell_difference(a, b)
    half = 0.1 * 2**0.5  # sqrt(0.1^2 + 0.1^2): z cancels
    assert (
        diff == pytest.approx(-0.3) and lo == pytest.approx(-0.3 - half) and hi == pytest.approx(-0.3 + half)
    )


def test_forgot_is_claimed_only_when_the_interval_excludes_zero():
    before, after = {"value": 0.8}, {"value": 0.5}
    assert "forgot part of" in forgot_sentence("sst2", "accuracy", before, after, {"diff": -0.3, "diff_ci95": [-0.4, -0.2]}, True)  # fmt: skip
    assert "No measurable forgetting" in forgot_sentence("sst2", "accuracy", before, after, {"diff": -0.3, "diff_ci95": [-0.7, 0.1]}, True)  # fmt: skip
    # perplexity: lower is better, so a rise is forgetting
    assert "forgot part of" in forgot_sentence("lm", "perplexity", {"value": 10.0}, {"value": 12.0}, {"diff": 2.0, "diff_ci95": [1.0, 3.0]}, False)  # fmt: skip
