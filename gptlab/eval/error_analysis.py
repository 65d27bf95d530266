"""Error analysis of a classifier's predictions: where it is wrong, and how sure it was.

Accuracy is one number; the report asks for the cases behind it. From each example's text, gold
label, predicted label, the probability the model gave its prediction, and its length in tokens:

- ``confident_mistakes``: the wrong predictions the model was surest of (highest probability
  first): label noise, or the patterns the model has learned wrongly;
- ``unsure_correct``: the right predictions it was least sure of (lowest probability first):
  the "ambiguous cases" it gets right by a hair;
- ``by_length``: accuracy in token-length buckets cut at the quantiles of the lengths (quartiles
  by default; ties stay in one bucket, so there may be fewer), each with its token range;
- ``by_negation``: accuracy on texts with and without a negation word ("not", "n't", "never",
  "no"), the classic trap of bag-of-words sentiment.

Every bucket has ``n``, ``correct``, ``accuracy`` and a 95% Wilson score interval
(``interval``: [low, high]; Wilson 1927), which keeps its coverage for the small counts and the
accuracies near 1 that such buckets have; a bucket with n = 0 is left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from gptlab.audit.common import wilson_interval
from gptlab.errors import GptlabError

NEGATION_WORDS = ("not", "n't", "never", "no")
# "no", "not", "never" as whole words; "n't" at the end of a word (don't, isn't, can't), with a
# straight or a typographic apostrophe; SST-2's tokenised text writes "does n't", also matched
_NEGATION = re.compile(r"\b(?:not|never|no)\b|n['\u2019]t\b", re.IGNORECASE)


def has_negation(text: str) -> bool:
    """Whether ``text`` holds one of `NEGATION_WORDS`."""
    return _NEGATION.search(text) is not None


def bucket(name: str, correct: Sequence[bool], **extra: Any) -> dict[str, Any]:
    """One bucket's record: name, n, correct, accuracy and its 95% Wilson interval."""
    k, n = int(sum(correct)), len(correct)
    low, high = wilson_interval(k, n)
    return {"bucket": name, **extra, "n": n, "correct": k, "accuracy": k / n, "interval": [low, high]}


def length_buckets(lengths: Sequence[int], correct: Sequence[bool], quantiles: int = 4) -> list[dict]:
    """Accuracy per token-length bucket: cut points at the 1/q .. (q-1)/q quantiles of the lengths
    (repeated cut points merged), bucket i holds the lengths in (cut[i-1], cut[i]]."""
    lengths_array = np.asarray(lengths, dtype=float)
    cuts = np.unique(np.quantile(lengths_array, np.arange(1, quantiles) / quantiles)) if len(lengths) else []
    index = np.searchsorted(cuts, lengths_array, side="left")  # how many cut points lie below
    out = []
    for i in range(len(cuts) + 1):
        members = np.flatnonzero(index == i)
        if len(members) == 0:
            continue
        lo, hi = int(lengths_array[members].min()), int(lengths_array[members].max())
        out.append(bucket(f"{lo}-{hi} tokens", [correct[j] for j in members], min_tokens=lo, max_tokens=hi))
    return out


def error_analysis(
    texts: Sequence[str],
    gold: Sequence[int],
    predicted: Sequence[int],
    confidence: Sequence[float],
    lengths: Sequence[int],
    label_names: Sequence[str],
    examples: int = 10,
    quantiles: int = 4,
) -> dict[str, Any]:
    """The analysis (module doc) of n predictions: ``confidence`` is the probability the model
    gave its ``predicted`` class, ``lengths`` each text's tokens; ``examples`` per list."""
    n = len(texts)
    if not all(len(x) == n for x in (gold, predicted, confidence, lengths)):
        raise GptlabError(
            f"error analysis: {n} texts but {len(gold)} gold labels, {len(predicted)} predictions, "
            f"{len(confidence)} probabilities and {len(lengths)} lengths"
        )
    if n == 0:
        raise GptlabError("error analysis: no predictions to analyse")
    correct = [g == p for g, p in zip(gold, predicted)]

    def item(i: int) -> dict[str, Any]:
        return {
            "text": texts[i],
            "gold": label_names[gold[i]],
            "predicted": label_names[predicted[i]],
            "probability": float(confidence[i]),
            "tokens": int(lengths[i]),
        }

    # ties keep file order (a stable sort), so the lists are reproducible
    wrong = sorted((i for i in range(n) if not correct[i]), key=lambda i: -confidence[i])
    right = sorted((i for i in range(n) if correct[i]), key=lambda i: confidence[i])
    negated = [has_negation(t) for t in texts]
    by_negation = [
        bucket(name, [c for c, neg in zip(correct, negated) if neg == flag])
        for name, flag in (("negation", True), ("no negation", False))
        if any(neg == flag for neg in negated)
    ]
    return {
        "n": n,
        "accuracy": sum(correct) / n,
        "confident_mistakes": [item(i) for i in wrong[:examples]],
        "unsure_correct": [item(i) for i in right[:examples]],
        "by_length": length_buckets(lengths, correct, quantiles),
        "by_negation": by_negation,
        "negation_words": list(NEGATION_WORDS),
    }


def format_error_analysis(analysis: dict[str, Any], width: int = 70) -> str:
    """The analysis as text: the bucket tables, then the two lists of examples."""
    lines = ["accuracy by bucket (95% Wilson interval):"]
    for b in analysis["by_length"] + analysis["by_negation"]:
        low, high = b["interval"]
        lines.append(f"  {b['bucket']:<18} n={b['n']:<6} {b['accuracy']:.3f} [{low:.3f}, {high:.3f}]")
    for key, title in (
        ("confident_mistakes", "most confident mistakes"),
        ("unsure_correct", "least confident correct answers"),
    ):
        lines.append(f"{title} (gold -> predicted, probability):")
        for x in analysis[key]:
            text = x["text"] if len(x["text"]) <= width else x["text"][: width - 3] + "..."
            lines.append(f"  {x['gold']} -> {x['predicted']} {x['probability']:.3f}  {text}")
        if not analysis[key]:
            lines.append("  (none)")
    return "\n".join(lines)
