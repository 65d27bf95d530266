"""The defences stage's statistics and generated explanations (fast; the stage end to end runs in
tests/study/test_study.py on the study-tiny profile)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from gptlab.errors import GptlabError
from gptlab.study.dp_curve import group_note, parse_epsilons
from gptlab.study.findings import t_interval


def test_t_interval_is_scipys():
    values = [2.0, 3.5, 1.0, 4.0]
    mean, (lo, hi) = t_interval(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
    assert (lo, hi) == pytest.approx(expected)
    assert t_interval([1.0]) == (1.0, None)


def test_epsilons_always_include_the_non_private_run():
    assert parse_epsilons(["8", "1"]) == [math.inf, 8.0, 1.0]
    assert parse_epsilons(["inf", "3"]) == [math.inf, 3.0]
    for bad in (["0"], ["-1"], ["eight"]):
        with pytest.raises(GptlabError, match="defences.epsilons"):
            parse_epsilons(bad)


def entry(repeats: int, interval, eps: float = 8.0) -> dict:
    return {
        "repeats": repeats,
        "change": sum(interval) / 2,
        "change_ci95": interval,
        "group_epsilon": repeats * eps,
    }


def test_a_repeated_canary_whose_exposure_did_not_fall_is_explained_with_its_group_bound():
    rose = group_note("8", entry(16, [1.5, 9.0]))
    assert "canaries inserted 16 times: exposure rose" in rose and "r*epsilon = 128" in rose
    flat = group_note("8", entry(4, [-2.0, 3.0]))
    assert "did not measurably fall" in flat and "r*epsilon = 32" in flat
    assert group_note("8", entry(16, [-9.0, -1.0])) is None  # it fell: nothing to explain
    assert group_note("8", entry(1, [0.5, 2.0])) is None  # one copy: DP's own bound, no group argument
    assert group_note("8", {"repeats": 0, "group_epsilon": None}) is None  # controls
