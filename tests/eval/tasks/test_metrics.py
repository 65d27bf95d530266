"""Task metrics: aggregations and standard errors against hand values and lm-evaluation-harness's
own functions, the bootstrap interval, per-category breakdowns, acc and acc_norm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gptlab.errors import GptlabError
from gptlab.eval.tasks.metrics import aggregate, bootstrap, by_category, choice_metrics, summarize


def test_mean_and_its_stderr_by_hand_and_as_the_harness_computes_them():
    from lm_eval.api.metrics import mean_stderr

    s = summarize("mean", [1.0, 0.0, 1.0, 1.0])
    # mean 0.75; sample std sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5; stderr 0.5 / sqrt(4)
    assert s.value == 0.75 and s.stderr == pytest.approx(0.25) and s.n == 4
    values = list(np.random.default_rng(0).random(50))
    assert summarize("mean", values).stderr == pytest.approx(mean_stderr(values))


def test_perplexity_is_exp_of_minus_the_mean_loglikelihood():
    from lm_eval.api.metrics import perplexity

    assert aggregate("perplexity", [-1.0, -2.0, -3.0]) == pytest.approx(math.exp(2.0))
    lls = [-0.3, -4.1, -2.2, -0.9]
    assert aggregate("perplexity", lls) == pytest.approx(perplexity(lls))


def test_weighted_perplexities_and_bits_per_byte():
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

    pairs = [(-4.0, 2), (-2.0, 2)]  # 6 nats over 4 words
    assert aggregate("word_perplexity", pairs) == pytest.approx(math.exp(1.5))
    assert aggregate("byte_perplexity", pairs) == pytest.approx(weighted_perplexity(pairs))
    assert aggregate("bits_per_byte", [(-3 * math.log(2), 3), (-math.log(2), 5)]) == pytest.approx(0.5)
    assert aggregate("bits_per_byte", pairs) == pytest.approx(bits_per_byte(pairs))


def test_the_bootstrap_interval_holds_the_value_and_is_seeded():
    values = list(np.random.default_rng(1).integers(0, 2, 200).astype(float))
    a, b = summarize("mean", values, seed=3), summarize("mean", values, seed=3)
    assert a.ci95[0] < a.value < a.ci95[1] and a == b
    assert not np.array_equal(bootstrap("mean", values, seed=3), bootstrap("mean", values, seed=4))
    # a 95% interval of a mean is about +- 1.96 stderr
    assert a.ci95[1] - a.ci95[0] == pytest.approx(2 * 1.96 * a.stderr, rel=0.15)
    ppl = summarize("perplexity", list(-np.random.default_rng(2).random(100) * 3))
    assert ppl.ci95[0] < ppl.value < ppl.ci95[1] and ppl.stderr > 0
    assert len(bootstrap("mean", values, seed=0, resamples=250)) == 250


def test_one_item_has_no_stderr_and_no_items_is_an_error():
    assert summarize("mean", [1.0]).stderr is None
    with pytest.raises(GptlabError, match="no items"):
        aggregate("mean", [])
    with pytest.raises(GptlabError, match="unknown aggregation"):
        aggregate("median", [1.0])


def test_per_category_values_and_counts():
    items = [{"acc": 1.0}, {"acc": 0.0}, {"acc": 1.0}, {"acc": 1.0}]
    assert by_category({"acc": "mean"}, items, ["b", "a", "b", "a"]) == {
        "a": {"acc": 0.5, "n": 2},
        "b": {"acc": 1.0, "n": 2},
    }


def test_acc_and_acc_norm_as_the_harness_defines_them():
    # " a" is likelier, but per character " ccc" wins: -3 / 2 = -1.5 against -4 / 4 = -1.0
    assert choice_metrics([-3.0, -4.0], 1, ["a", "ccc "]) == {"acc": 0.0, "acc_norm": 1.0}
    assert choice_metrics([-1.0, -1.0], 0, ["x", "y"]) == {"acc": 1.0, "acc_norm": 1.0}  # a tie: the first
