"""ROUGE (Lin, 2004, "ROUGE: A Package for Automatic Evaluation of Summaries"), computed the way
Google's ``rouge-score`` package (``rouge_scorer.RougeScorer``) does.

Text is lowercased, every run of characters outside ``[a-z0-9]`` becomes a space, and with
``use_stemmer=True`` tokens longer than 3 characters are Porter-stemmed (gptlab.eval.porter).

- ROUGE-N: clipped n-gram overlap; precision = overlap / prediction n-grams, recall = overlap /
  reference n-grams.
- ROUGE-L: the longest common subsequence (LCS) of the two token sequences; precision =
  LCS / prediction length, recall = LCS / reference length.
- ROUGE-Lsum: summary-level LCS (Lin, 2004, section 3.2). Texts are split into sentences on
  newlines; for each reference sentence, the union of its LCS with every prediction sentence
  counts as hits, each token counted at most as often as it occurs in both texts (as
  ROUGE-1.5.5 does).

Each gives F = 2PR / (P + R) (0 when P + R = 0). With several references, each type keeps the
reference with the best F (``RougeScorer.score_multi``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from gptlab.eval.porter import porter_stem

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_ROUGE_N = re.compile(r"rouge([1-9])")
_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
# rouge-score stems only tokens at least this long, so short words like "was" and "has" stay whole.
MIN_STEM_LENGTH = 4
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class RougeScore:
    """Precision, recall and F-measure, each in [0, 1]."""

    precision: float
    recall: float
    fmeasure: float

    @classmethod
    def from_precision_recall(cls, precision: float, recall: float) -> RougeScore:
        fmeasure = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return cls(precision, recall, fmeasure)


@dataclass(frozen=True)
class RougeAggregate:
    """Corpus ROUGE for one type: the mean over pairs, and a bootstrap confidence interval.

    ``low``/``high`` are None unless bootstrap resampling was asked for.
    """

    mean: RougeScore
    low: RougeScore | None = None
    high: RougeScore | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def rouge_tokenize(text: str, use_stemmer: bool = False) -> list[str]:
    """rouge-score's tokenizer: lowercase, non-[a-z0-9] runs to spaces, optional Porter stemming."""
    tokens = _NON_ALPHANUMERIC.sub(" ", text.lower()).split()
    if use_stemmer:
        tokens = [porter_stem(t) if len(t) >= MIN_STEM_LENGTH else t for t in tokens]
    return tokens


def rouge(
    prediction: str,
    reference: str | Sequence[str],
    types: Sequence[str] = ROUGE_TYPES,
    use_stemmer: bool = False,
) -> dict[str, RougeScore]:
    """ROUGE scores of ``prediction`` against ``reference`` (or the best of several references).

    Matches ``RougeScorer(types, use_stemmer).score(reference, prediction)`` (note rouge-score's
    target-first order) and, for a list of references, ``score_multi``.
    """
    _check_types(types)
    if isinstance(reference, str):
        return _score(prediction, reference, types, use_stemmer)
    if not reference:
        raise ValueError("reference must be a string or a non-empty list of strings")
    per_reference = [_score(prediction, r, types, use_stemmer) for r in reference]
    # max() keeps the first of equal F-measures, as rouge-score's argmax does
    return {t: max((s[t] for s in per_reference), key=lambda score: score.fmeasure) for t in types}


def corpus_rouge(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    types: Sequence[str] = ROUGE_TYPES,
    use_stemmer: bool = False,
    bootstrap_samples: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, RougeAggregate]:
    """Mean ROUGE precision, recall and F over prediction/reference pairs, per type.

    With ``bootstrap_samples > 0``, also a percentile bootstrap confidence interval of the mean:
    resample the pairs with replacement ``bootstrap_samples`` times and take the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the resampled means. The
    resampling draws from one ``numpy.random.RandomState(seed)``, type after type, exactly as
    rouge-score's ``BootstrapAggregator`` draws from numpy's global generator, so after
    ``np.random.seed(seed)`` the two give the same intervals.
    """
    _check_types(types)
    if isinstance(predictions, str) or not predictions:
        raise ValueError("predictions must be a non-empty list of strings")
    if len(references) != len(predictions):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    if not 0 <= confidence <= 1:
        raise ValueError(f"confidence must be in [0, 1], got {confidence}")
    if bootstrap_samples < 0:
        raise ValueError(f"bootstrap_samples must be >= 0, got {bootstrap_samples}")

    pair_scores = [rouge(p, r, types, use_stemmer) for p, r in zip(predictions, references)]
    rng = np.random.RandomState(seed)  # one stream for all types, in order, like BootstrapAggregator
    result = {}
    for t in types:
        matrix = np.array([[s[t].precision, s[t].recall, s[t].fmeasure] for s in pair_scores])  # (pairs, 3)
        mean = RougeScore(*(float(v) for v in matrix.mean(axis=0)))
        if bootstrap_samples == 0:
            result[t] = RougeAggregate(mean)
            continue
        sample_means = np.stack(
            [matrix[rng.choice(len(matrix), size=len(matrix))].mean(axis=0) for _ in range(bootstrap_samples)]
        )  # (bootstrap_samples, 3)
        tail = (1 - confidence) / 2
        low, high = np.percentile(sample_means, 100 * np.array([tail, 1 - tail]), axis=0)
        result[t] = RougeAggregate(mean, RougeScore(*map(float, low)), RougeScore(*map(float, high)))
    return result


def _check_types(types: Sequence[str]) -> None:
    if isinstance(types, str):
        raise ValueError(f"types must be a list of ROUGE types, e.g. [{types!r}]")
    for t in types:
        if t not in ("rougeL", "rougeLsum") and not _ROUGE_N.fullmatch(t):
            raise ValueError(f"unknown ROUGE type {t!r}: expected rouge1..rouge9, rougeL or rougeLsum")


def _score(prediction: str, reference: str, types: Sequence[str], use_stemmer: bool) -> dict[str, RougeScore]:
    pred_tokens = rouge_tokenize(prediction, use_stemmer)
    ref_tokens = rouge_tokenize(reference, use_stemmer)
    scores = {}
    for t in types:
        if t == "rougeL":
            scores[t] = _lcs_score(pred_tokens, ref_tokens)
        elif t == "rougeLsum":
            scores[t] = _summary_lcs_score(
                _sentences(prediction, use_stemmer), _sentences(reference, use_stemmer)
            )
        else:
            n = int(t[len("rouge") :])
            scores[t] = _ngram_score(pred_tokens, ref_tokens, n)
    return scores


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _ngram_score(pred_tokens: list[str], ref_tokens: list[str], n: int) -> RougeScore:
    pred, ref = _ngrams(pred_tokens, n), _ngrams(ref_tokens, n)
    overlap = sum((pred & ref).values())
    # rouge-score divides by at least 1, so an empty side scores 0 rather than failing
    precision = overlap / max(sum(pred.values()), 1)
    recall = overlap / max(sum(ref.values()), 1)
    return RougeScore.from_precision_recall(precision, recall)


def _lcs_table(a: list[str], b: list[str]) -> list[list[int]]:
    """table[i][j] = LCS length of a[:i] and b[:j]."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table


def _lcs_score(pred_tokens: list[str], ref_tokens: list[str]) -> RougeScore:
    if not pred_tokens or not ref_tokens:
        return RougeScore(0.0, 0.0, 0.0)
    lcs = _lcs_table(ref_tokens, pred_tokens)[-1][-1]
    return RougeScore.from_precision_recall(lcs / len(pred_tokens), lcs / len(ref_tokens))


def _lcs_positions(ref: list[str], pred: list[str]) -> list[int]:
    """Positions in ``ref`` of one LCS with ``pred``, read back from the end of the table.

    Which LCS is chosen matters for the union in ROUGE-Lsum; ties go the same way as rouge-score.
    """
    table = _lcs_table(ref, pred)
    i, j = len(ref), len(pred)
    positions = []
    while i > 0 and j > 0:
        if ref[i - 1] == pred[j - 1]:
            positions.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return positions


def _sentences(text: str, use_stemmer: bool) -> list[list[str]]:
    """Tokens of each non-empty line (ROUGE-Lsum takes one sentence per line)."""
    return [rouge_tokenize(line, use_stemmer) for line in text.split("\n") if line]


def _summary_lcs_score(pred_sents: list[list[str]], ref_sents: list[list[str]]) -> RougeScore:
    pred_len = sum(map(len, pred_sents))
    ref_len = sum(map(len, ref_sents))
    if not pred_len or not ref_len:
        return RougeScore(0.0, 0.0, 0.0)
    # Each token can be a hit at most as often as it occurs in both texts.
    pred_budget = Counter(t for s in pred_sents for t in s)
    ref_budget = Counter(t for s in ref_sents for t in s)
    hits = 0
    for ref in ref_sents:
        union = sorted(set().union(*(_lcs_positions(ref, pred) for pred in pred_sents)))
        for token in (ref[i] for i in union):
            if pred_budget[token] > 0 and ref_budget[token] > 0:
                hits += 1
                pred_budget[token] -= 1
                ref_budget[token] -= 1
    return RougeScore.from_precision_recall(hits / pred_len, hits / ref_len)
