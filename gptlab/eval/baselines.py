"""Floors for the task recipes, scored by the same code as the models they are compared with.

- Summaries: **lead-1** (the document's first sentence, the standard extractive baseline for
  news and SciTLDR) and **random sentence** (one sentence drawn uniformly per document, seeded),
  scored with ROUGE-1/2/L exactly as ``gptlab eval generation`` scores a model's outputs
  (`gptlab.eval.generation.score_outputs`, multiple references allowed).
- Labels: a **bag-of-words logistic regression** (scikit-learn: unigram + bigram counts, L2, the
  regularisation strength fixed, not tuned on the evaluation data), the usual floor for a
  sentence classifier such as SST-2's.

Sentences are split after ``.``, ``!`` or ``?`` followed by whitespace, which is what the
abstracts of SciTLDR (sentences joined by single spaces) need; abbreviations such as "e.g. x"
split too, which a baseline can live with.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gptlab.errors import GptlabError

SUMMARY_BASELINES = ("lead1", "random")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """The non-empty sentences of ``text``, split after . ! or ? and whitespace."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def lead_sentence(text: str) -> str:
    """The first sentence (the whole text when it has no sentence end)."""
    sentences = split_sentences(text)
    return sentences[0] if sentences else ""


def random_sentences(texts: Sequence[str], seed: int = 0) -> list[str]:
    """One uniformly drawn sentence per text, from one seeded generator (same seed, same picks)."""
    rng = random.Random(seed)
    picks = []
    for text in texts:
        sentences = split_sentences(text) or [""]
        picks.append(sentences[rng.randrange(len(sentences))])
    return picks


def summary_baselines(
    documents: Sequence[str], references: Sequence[Sequence[str]], seed: int = 0
) -> dict[str, dict[str, float]]:
    """{"lead1": scores, "random": scores}: mean ROUGE-1/2/L F (0-1) and ``n``, from
    `score_outputs` (the scorer of ``gptlab eval generation``)."""
    from gptlab.eval.generation import score_outputs

    if len(documents) != len(references):
        raise GptlabError(f"got {len(documents)} documents but {len(references)} reference lists")
    outputs = {"lead1": [lead_sentence(d) for d in documents], "random": random_sentences(documents, seed)}
    return {name: score_outputs(outs, references, ("rouge",))[0] for name, outs in outputs.items()}


@dataclass(frozen=True)
class BagOfWordsResult:
    accuracy: float
    n_train: int
    n_test: int
    vocabulary: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bag_of_words_accuracy(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    test_texts: Sequence[str],
    test_labels: Sequence[int],
    *,
    c: float = 1.0,
) -> BagOfWordsResult:
    """Test accuracy of a logistic regression on unigram + bigram counts fitted on the train texts
    (the vocabulary is the train texts'; words seen only in test are ignored)."""
    try:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise GptlabError(
            "the bag-of-words baseline needs scikit-learn: pip install 'gptlab[analyze]'"
        ) from None
    if not train_texts or not test_texts:
        raise GptlabError("the bag-of-words baseline needs train and test texts")
    if len(set(train_labels)) < 2:
        raise GptlabError("the bag-of-words baseline needs at least two labels in the train texts")
    # a token is any run of non-space characters: SST-2 is PTB-tokenised ("n't", "," are tokens)
    vectorizer = CountVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=True)
    x_train = vectorizer.fit_transform(train_texts)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(x_train, list(train_labels))
    predicted = model.predict(vectorizer.transform(test_texts))
    correct = sum(int(p == y) for p, y in zip(predicted, test_labels))
    return BagOfWordsResult(
        correct / len(test_texts), len(train_texts), len(test_texts), len(vectorizer.vocabulary_)
    )
