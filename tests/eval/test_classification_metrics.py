"""Classification metrics from scratch vs scikit-learn: accuracy, precision/recall/F1, confusion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptlab.errors import GptlabError
from gptlab.eval.classification import classification_metrics, confusion_matrix

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@st.composite
def labelled(draw):
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 60))
    y_true = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return k, y_true, y_pred


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(labelled())
def test_matches_sklearn(case):
    k, y_true, y_pred = case
    names = [f"c{i}" for i in range(k)]
    m = classification_metrics(y_true, y_pred, names)
    labels = list(range(k))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    assert m.precision == pytest.approx(list(p), abs=1e-12)
    assert m.recall == pytest.approx(list(r), abs=1e-12)
    assert m.f1 == pytest.approx(list(f), abs=1e-12)
    assert m.support == list(s)
    assert m.accuracy == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    assert m.macro_f1 == pytest.approx(
        sklearn_metrics.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    )
    assert m.weighted_f1 == pytest.approx(
        sklearn_metrics.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    )
    assert m.confusion == sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist()


def test_all_one_class_predictor_has_zero_minority_recall():
    m = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], ["ham", "spam"])
    assert m.accuracy == 0.75
    assert m.recall == [1.0, 0.0] and m.precision[1] == 0.0 and m.f1[1] == 0.0
    d = m.to_dict()
    assert d["per_class"]["spam"]["support"] == 1 and d["confusion_matrix"] == [[3, 0], [1, 0]]
    text = m.format()
    assert "accuracy  0.7500" in text and "confusion matrix" in text


def test_bad_input_is_a_clear_error():
    with pytest.raises(GptlabError, match="2 true labels but 1"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(GptlabError, match="out of range"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(GptlabError, match="at least two classes"):
        classification_metrics([0], [0], ["only"])
