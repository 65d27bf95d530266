"""The findings builder: a direction is claimed only when the interval excludes the reference, and
the Welch interval matches scipy's Welch t-test."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptlab.study import findings

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
CLAIMS = ("raised", "lowered", " is above ", " is below ")


@given(finite, finite, finite)
def test_difference_claims_a_direction_only_when_the_interval_excludes_zero(diff, a, b):
    lo, hi = sorted((a, b))
    sentence = findings.difference("val loss", "rope", "baseline", diff, (lo, hi), "nats")
    claims = [w for w in CLAIMS if w in sentence]
    if lo <= 0 <= hi:
        assert claims == [] and sentence.startswith("No measurable difference")
    else:
        assert claims == (["raised"] if lo > 0 else ["lowered"])


@given(finite, finite, finite, finite)
def test_against_reference_claims_a_side_only_when_the_interval_excludes_it(value, a, b, ref):
    lo, hi = sorted((a, b))
    sentence = findings.against_reference("acc", value, (lo, hi), ref, "chance")
    claims = [w for w in CLAIMS if w in sentence]
    if lo <= ref <= hi:
        assert claims == [] and "not distinguishable" in sentence
    else:
        assert claims == ([" is above "] if lo > ref else [" is below "])


def test_no_interval_means_no_claim():
    for sentence in (
        findings.difference("val loss", "relu", "baseline", -0.5, None),
        findings.against_reference("p-value", 0.01, None, 0.05, "the threshold"),
    ):
        assert not any(w in sentence for w in CLAIMS)


def test_numbers_in_sentences_use_the_report_format():
    sentence = findings.difference("val loss", "rope", "baseline", -0.123456, (-0.2, -0.0412345), "nats")
    assert "-0.1235" in sentence and "-0.04123" in sentence and "lowered" in sentence


def test_welch_interval_matches_scipy():
    from scipy import stats

    a, b = [4.1, 4.3, 4.25], [4.6, 4.4]
    diff, (lo, hi) = findings.welch_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(sum(a) / 3 - sum(b) / 2)
    assert (lo, hi) == pytest.approx((ref.low, ref.high))


def test_one_seed_gives_no_interval():
    assert findings.welch_interval([4.0], [4.2, 4.3]) == (pytest.approx(-0.25), None)
    assert findings.mean_interval([1.0]) == (1.0, None)


def test_mean_interval_by_hand():
    mean, (lo, hi) = findings.mean_interval([1.0, 2.0, 3.0])
    half = 1.959963984540054 * 1.0 / math.sqrt(3)  # sd of 1, 2, 3 is 1
    assert mean == 2.0 and (lo, hi) == pytest.approx((2 - half, 2 + half))
