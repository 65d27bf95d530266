"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): each ranking gives item d
the score 1 / (k + rank(d)), ranks counted from 1, and the fused score is the sum over the rankings
that hold d. k = 60 is the paper's constant: it damps the weight of the very first ranks so that
one ranking's top item does not outvote agreement lower down. Scores need no calibration between
rankers, which is why it suits BM25 (unbounded) beside cosine (in [-1, 1])."""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """(item, fused score) best first; ties keep the order in which items were first seen."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])  # sorted() is stable: ties keep order
