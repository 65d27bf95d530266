"""chrF (Popović, 2015, "chrF: character n-gram F-score for automatic MT evaluation") and chrF++
(Popović, 2017: word unigrams and bigrams added), computed the way ``sacrebleu`` 2.x does.

For each order n (character n-grams for n = 1..``char_order``, then word n-grams for
n = 1..``word_order``), the hypothesis and reference n-gram multisets give counts: hypothesis
n-grams, reference n-grams, matches (each n-gram counts min(hyp count, ref count) times). At
corpus level the counts are summed over segments first. Precision P and recall R are averaged
over the orders that both sides have (sacrebleu's "effective order": an order with no hypothesis
or no reference n-grams is left out, so a three-letter word is not punished for lacking 6-grams),
then chrF = 100 * (1 + beta^2) P R / (beta^2 P + R): beta = 2 weighs recall twice as much as
precision. Character n-grams ignore whitespace (it is removed first); word n-grams are split on
whitespace, with one punctuation mark peeled off the end (or else the start) of each word.

With several references, each segment keeps the statistics of the reference that gives it the
highest segment-level chrF (the first one on a tie).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gptlab.eval.bleu import segment_references

CHAR_ORDER = 6
WORD_ORDER = 0  # 2: chrF++
BETA = 2
PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
EPSILON = 1e-16  # the per-order F of an order with nothing to compare (eps_smoothing only)

# one order's statistics: (hypothesis n-grams, reference n-grams, matched n-grams)
Stats = list[tuple[int, int, int]]


@dataclass(frozen=True)
class ChrfScore:
    """A chrF result on the 0-100 scale; ``name`` is sacrebleu's (chrF2, chrF2++)."""

    score: float
    char_order: int
    word_order: int
    beta: float

    @property
    def name(self) -> str:
        beta = int(self.beta) if float(self.beta).is_integer() else self.beta
        return f"chrF{beta}" + "+" * self.word_order

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "name": self.name,
            "char_order": self.char_order,
            "word_order": self.word_order,
            "beta": self.beta,
        }

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f}"


def char_ngrams(text: str, n: int, whitespace: bool = False) -> Counter[str]:
    """Character n-grams of ``text`` (whitespace removed unless ``whitespace``)."""
    if not whitespace:
        text = "".join(text.split())
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf_words(text: str) -> list[str]:
    """Words for chrF++'s word n-grams: split on whitespace; a word longer than one character
    that ends in punctuation loses it as a separate word, else one that starts with it does
    (so "(hi)" becomes "(hi" and ")", as in sacrebleu)."""
    words: list[str] = []
    for word in text.split():
        if len(word) > 1 and word[-1] in PUNCTUATION:
            words += [word[:-1], word[-1]]
        elif len(word) > 1 and word[0] in PUNCTUATION:
            words += [word[0], word[1:]]
        else:
            words.append(word)
    return words


def _word_ngrams(words: list[str], n: int) -> Counter[str]:
    return Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def _all_ngrams(text: str, char_order: int, word_order: int, whitespace: bool) -> list[Counter[str]]:
    grams = [char_ngrams(text, n, whitespace) for n in range(1, char_order + 1)]
    if word_order:
        words = chrf_words(text)
        grams += [_word_ngrams(words, n) for n in range(1, word_order + 1)]
    return grams


def _match(hyp: Counter[str], ref: Counter[str]) -> tuple[int, int, int]:
    matched = sum(min(count, ref[g]) for g, count in hyp.items() if g in ref)
    # an order the reference has no n-grams of counts no hypothesis n-grams either (sacrebleu)
    return (sum(hyp.values()) if ref else 0), sum(ref.values()), matched


def chrf_from_stats(
    stats: Sequence[tuple[int, int, int]], beta: float = BETA, eps_smoothing: bool = False
) -> float:
    """chrF (0-100) from per-order (hyp, ref, matched) counts; see the module docstring.
    ``eps_smoothing``: the mean of per-order F scores instead (chrF++.py, NLTK, Moses)."""
    factor = beta**2
    if eps_smoothing:
        total = 0.0
        for n_hyp, n_ref, n_match in stats:
            p = n_match / n_hyp if n_hyp else EPSILON
            r = n_match / n_ref if n_ref else EPSILON
            denominator = factor * p + r
            total += (1 + factor) * p * r / denominator if denominator > 0 else EPSILON
        return 100 * total / len(stats)
    precision = recall = 0.0
    orders = 0
    for n_hyp, n_ref, n_match in stats:
        if n_hyp and n_ref:
            precision += n_match / n_hyp
            recall += n_match / n_ref
            orders += 1
    if orders:
        precision, recall = precision / orders, recall / orders
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def segment_chrf_stats(
    hypothesis: str,
    references: Sequence[str],
    *,
    char_order: int = CHAR_ORDER,
    word_order: int = WORD_ORDER,
    beta: float = BETA,
    lowercase: bool = False,
    whitespace: bool = False,
    eps_smoothing: bool = False,
) -> Stats:
    """One segment's per-order counts against its best reference (highest segment chrF)."""
    if not references:
        raise ValueError("every hypothesis needs at least one reference")
    if lowercase:
        hypothesis = hypothesis.lower()
    hyp_grams = _all_ngrams(hypothesis, char_order, word_order, whitespace)
    best: Stats = []
    best_score = -1.0
    for reference in references:
        if lowercase:
            reference = reference.lower()
        ref_grams = _all_ngrams(reference, char_order, word_order, whitespace)
        stats = [_match(h, r) for h, r in zip(hyp_grams, ref_grams)]
        score = chrf_from_stats(stats, beta, eps_smoothing)
        if score > best_score:
            best, best_score = stats, score
    return best


def _check(char_order: int, word_order: int, beta: float) -> None:
    if char_order < 0 or word_order < 0 or char_order + word_order < 1:
        raise ValueError(
            f"need char_order, word_order >= 0 and at least one order, got {char_order}, {word_order}"
        )
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")


def corpus_chrf(
    hypotheses: Sequence[str],
    references_list: Sequence[Sequence[str | None]],
    *,
    char_order: int = CHAR_ORDER,
    word_order: int = WORD_ORDER,
    beta: float = BETA,
    lowercase: bool = False,
    whitespace: bool = False,
    eps_smoothing: bool = False,
) -> ChrfScore:
    """Corpus chrF of ``hypotheses``, as ``sacrebleu.corpus_chrf`` (``word_order=2``: chrF++).

    ``references_list`` is sacrebleu's layout, one list per reference set aligned with the
    hypotheses (``[refs]`` for one reference a segment); a ``None`` entry: one reference fewer.
    """
    _check(char_order, word_order, beta)
    totals = [[0, 0, 0] for _ in range(char_order + word_order)]
    for hypothesis, references in zip(hypotheses, segment_references(hypotheses, references_list)):
        stats = segment_chrf_stats(
            hypothesis,
            references,
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        for total, counts in zip(totals, stats):
            for j in range(3):
                total[j] += counts[j]
    score = chrf_from_stats([tuple(t) for t in totals], beta, eps_smoothing)
    return ChrfScore(score, char_order, word_order, beta)


def sentence_chrf(hypothesis: str, references: Sequence[str], **options) -> ChrfScore:
    """chrF of one hypothesis against its references, as ``sacrebleu.sentence_chrf``."""
    if isinstance(references, str):
        raise ValueError("references must be a list of strings, e.g. [reference] for one reference")
    return corpus_chrf([hypothesis], [[r] for r in references], **options)
