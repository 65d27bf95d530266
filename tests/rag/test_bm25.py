"""BM25 against bm25s (Lucene's variant, the same k1 and b) and a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gptlab.rag.bm25 import BM25, tokenize

DOCS = [
    "the cat sat on the mat",
    "the dog sat on the log and the dog slept",
    "cats and dogs are pets",
    "a very long document about the weather the rain the wind and the sun over the hills",
    "dog",
]


def test_a_score_by_hand():
    docs = [["a", "b"], ["a", "a", "c", "d"]]
    bm = BM25.build(docs, k1=1.2, b=0.5)
    avgdl = 3.0
    idf_a = math.log(1 + (2 - 2 + 0.5) / (2 + 0.5))
    idf_c = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))
    d1 = idf_a * 2 / (2 + 1.2 * (1 - 0.5 + 0.5 * 4 / avgdl)) + idf_c * 1 / (
        1 + 1.2 * (1 - 0.5 + 0.5 * 4 / avgdl)
    )
    d0 = idf_a * 1 / (1 + 1.2 * (1 - 0.5 + 0.5 * 2 / avgdl))
    assert bm.scores(["a", "c", "zzz"]).tolist() == pytest.approx([d0, d1], rel=1e-12)


@pytest.mark.parametrize("k1, b", [(1.5, 0.75), (0.9, 0.4), (2.0, 1.0)])
@pytest.mark.parametrize("query", ["the dog", "cat mat", "dog dog sat", "weather hills sun", "pets and the"])
def test_scores_equal_bm25s_lucene(k1, b, query):
    bm25s = pytest.importorskip("bm25s")
    corpus = [tokenize(d) for d in DOCS]
    ours = BM25.build(corpus, k1=k1, b=b)
    ref = bm25s.BM25(method="lucene", k1=k1, b=b)
    ref.index(corpus, show_progress=False)
    expected = ref.get_scores(tokenize(query))
    np.testing.assert_allclose(ours.scores(query).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_round_trip_through_tensors():
    bm = BM25.build([tokenize(d) for d in DOCS])
    again = BM25.from_tensors(bm.tensors(), bm.vocab, bm.k1, bm.b)
    assert again.scores("the dog sat").tolist() == bm.scores("the dog sat").tolist()


def test_tokens_are_lower_cased_words():
    assert tokenize("The Cat's  mat, 2024!") == ["the", "cat", "s", "mat", "2024"]
