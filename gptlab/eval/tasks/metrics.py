"""How a task's per-item metric values become its numbers, as lm-evaluation-harness computes them,
each with a standard error and a 95% bootstrap interval.

Aggregations (``Task.metrics``): ``mean``; ``perplexity`` = exp(-mean) of per-item log-likelihoods
(LAMBADA's); ``word_perplexity`` / ``byte_perplexity`` = exp(-sum ll / sum units) and
``bits_per_byte`` = -sum ll / sum bytes / ln 2, over per-item ``(log-likelihood, words or bytes)``
pairs (the harness's weighted_perplexity and bits_per_byte).

Standard error: for ``mean`` the harness's closed form, the sample standard deviation (n - 1)
over sqrt(n); for the others the standard deviation of the statistic over bootstrap resamples
(the harness bootstraps perplexity the same way, with its own random draws, so that number agrees
only to sampling noise; it reports none for the weighted ones). The 95% interval is the 2.5 and
97.5 percentiles of the statistic over ``BOOTSTRAP_RESAMPLES`` resamples of the items, seeded, so
the same items give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gptlab.errors import GptlabError

BOOTSTRAP_RESAMPLES = 1000
RESAMPLES_PER_CHUNK = 100  # resamples drawn at once: (chunk, n) indices in memory
WEIGHTED = ("word_perplexity", "byte_perplexity", "bits_per_byte")
AGGREGATIONS = ("mean", "perplexity", *WEIGHTED)


@dataclass(frozen=True)
class Summary:
    """A metric's number over a set of items, its standard error (None for fewer than two items)
    and its 95% bootstrap interval."""

    value: float
    stderr: float | None
    ci95: tuple[float, float]
    n: int


def _arrays(aggregation: str, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-item values as float arrays: (values, None), or (log-likelihoods, units) for a weighted one."""
    if aggregation not in AGGREGATIONS:
        raise GptlabError(f"unknown aggregation {aggregation!r} (expected one of {', '.join(AGGREGATIONS)})")
    if aggregation in WEIGHTED:
        pairs = np.asarray(values, dtype=np.float64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]
    return np.asarray(values, dtype=np.float64).reshape(-1), None


def _statistic(aggregation: str, x: np.ndarray, units: np.ndarray | None) -> np.ndarray:
    """The aggregate over the last axis (x: (..., n)); vectorised over resamples."""
    if aggregation == "mean":
        return x.mean(-1)
    if aggregation == "perplexity":
        return np.exp(-x.mean(-1))
    ratio = x.sum(-1) / units.sum(-1)
    return -ratio / math.log(2) if aggregation == "bits_per_byte" else np.exp(-ratio)


def aggregate(aggregation: str, values: Sequence[Any]) -> float:
    """The task's number from its items' values (see the module docstring)."""
    x, units = _arrays(aggregation, values)
    if len(x) == 0:
        raise GptlabError("no items to aggregate")
    return float(_statistic(aggregation, x, units))


def bootstrap(
    aggregation: str, values: Sequence[Any], seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> np.ndarray:
    """The statistic over ``resamples`` resamples (with replacement, same size) of the items."""
    x, units = _arrays(aggregation, values)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, RESAMPLES_PER_CHUNK):
        idx = rng.integers(0, len(x), size=(min(RESAMPLES_PER_CHUNK, resamples - start), len(x)))
        out.append(_statistic(aggregation, x[idx], None if units is None else units[idx]))
    return np.concatenate(out)


def summarize(aggregation: str, values: Sequence[Any], seed: int = 1234) -> Summary:
    """`aggregate`, its standard error and its 95% bootstrap interval."""
    value = aggregate(aggregation, values)
    n = len(_arrays(aggregation, values)[0])
    draws = bootstrap(aggregation, values, seed)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    if n < 2:
        stderr = None
    elif aggregation == "mean":
        x = _arrays(aggregation, values)[0]
        stderr = float(x.std(ddof=1) / math.sqrt(n))
    else:
        stderr = float(draws.std(ddof=1))
    return Summary(value, stderr, (float(lo), float(hi)), n)


def by_category(
    metrics: Mapping[str, str], values: Sequence[Mapping[str, Any]], categories: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each category's aggregate of every metric and its item count: ``{category: {metric: v, "n": N}}``."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for item, category in zip(values, categories):
        groups.setdefault(category, []).append(item)
    return {
        category: {m: aggregate(agg, [it[m] for it in items]) for m, agg in metrics.items()}
        | {"n": len(items)}
        for category, items in sorted(groups.items())
    }


def choice_metrics(loglikelihoods: Sequence[float], gold: int, choices: Sequence[str]) -> dict[str, float]:
    """A multiple-choice item's ``acc`` (the most likely choice is the gold one) and ``acc_norm``
    (the same with each log-likelihood divided by its choice's length, as the harness computes
    it: the choice text's length in characters, without the delimiter). Ties go to the first."""
    lls = np.asarray(loglikelihoods, dtype=np.float64)
    lengths = np.array([float(len(c)) for c in choices])
    return {"acc": float(np.argmax(lls) == gold), "acc_norm": float(np.argmax(lls / lengths) == gold)}
