"""Text metrics in one place: BLEU, chrF, ROUGE, distinct-n, repetition rate and exact match.

BLEU lives in gptlab.eval.bleu and chrF in gptlab.eval.chrf (both match sacrebleu), ROUGE in gptlab.eval.rouge (matches Google's
rouge-score), the reference-free metrics in gptlab.eval.diversity; this module re-exports them
and defines exact match, the strictest reference-based metric.
"""

from __future__ import annotations

from gptlab.eval.bleu import BleuScore, corpus_bleu, sentence_bleu, tokenize_13a
from gptlab.eval.chrf import ChrfScore, corpus_chrf, sentence_chrf
from gptlab.eval.diversity import distinct_n, repetition_rate
from gptlab.eval.rouge import ROUGE_TYPES, RougeAggregate, RougeScore, corpus_rouge, rouge, rouge_tokenize

__all__ = [
    "ROUGE_TYPES",
    "BleuScore",
    "ChrfScore",
    "RougeAggregate",
    "RougeScore",
    "corpus_bleu",
    "corpus_chrf",
    "corpus_rouge",
    "distinct_n",
    "exact_match",
    "normalize_text",
    "repetition_rate",
    "rouge",
    "rouge_tokenize",
    "sentence_bleu",
    "sentence_chrf",
    "tokenize_13a",
]


def normalize_text(text: str, ignore_case: bool = False) -> str:
    """Strip, collapse every whitespace run to one space, and optionally case-fold."""
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


def exact_match(pred: str, ref: str, ignore_case: bool = False) -> bool:
    """True when ``pred`` and ``ref`` are equal after :func:`normalize_text`."""
    return normalize_text(pred, ignore_case) == normalize_text(ref, ignore_case)
