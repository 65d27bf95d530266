"""BLEU (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine Translation"),
computed the way ``sacrebleu`` does (Post, 2018, "A Call for Clarity in Reporting BLEU Scores").

BLEU = BP * exp(mean over n = 1..N of log p_n), reported on a 0-100 scale, where p_n is the
modified (clipped) n-gram precision: each hypothesis n-gram counts as correct at most as many
times as it occurs in the reference that has the most of it. The brevity penalty is
BP = exp(1 - r / c) when the hypothesis length c is below the reference length r (the reference
length closest to c, the shorter one on a tie), else 1. At corpus level, counts and lengths are
summed over all segments first, then the formula is applied once.

Smoothing of zero precisions (Chen & Cherry, 2014, "A Systematic Comparison of Smoothing
Techniques for Sentence-Level BLEU"): ``none``; ``floor`` (method 1: a zero count becomes
``smooth_value``, default 0.1); ``add-k`` (method 2: add ``smooth_value``, default 1, to the
counts and totals of orders n > 1); ``exp`` (method 3, the NIST/mteval-v13a one: the k-th zero
precision becomes 1 / (2^k * total_n)). ``effective_order`` averages only over the orders the
hypothesis is long enough to have, so a three-word sentence is not scored zero for lacking 4-grams.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

MAX_NGRAM_ORDER = 4
# Default smoothing values per method (Chen & Cherry, 2014); None: the method takes no value.
SMOOTH_DEFAULTS: dict[str, float | None] = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None}
TOKENIZERS = ("13a", "none")
# sacrebleu floors log(0) to this instead of -inf, so a zero precision gives a score of exactly 0.
LOG_OF_ZERO = -9999999999.0

# mteval-v13a.pl's tokenizer (the WMT standard), rules applied in order.
_V13A_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # split off ASCII punctuation and symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    # split off period and comma unless preceded by a digit ...
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    # ... or unless followed by a digit (so 3.14 and 1,000 stay whole)
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    # split off a dash that follows a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)
_V13A_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


def tokenize_13a(line: str) -> str:
    """Tokenize one segment like mteval-v13a.pl (sacrebleu's default ``13a``); tokens joined by spaces."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for entity, char in _V13A_ENTITIES:
            line = line.replace(entity, char)
    line = f" {line} "
    for pattern, replacement in _V13A_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


@dataclass(frozen=True)
class BleuScore:
    """A BLEU result; ``score`` and ``precisions`` are percentages (0-100).

    ``counts``/``totals`` are the matched/hypothesis n-gram counts per order (after add-k
    smoothing when it is used), ``sys_len``/``ref_len`` the hypothesis/reference token counts.
    """

    score: float
    precisions: list[float]
    bp: float
    sys_len: int
    ref_len: int
    counts: list[float]
    totals: list[float]

    @property
    def ratio(self) -> float:
        """Hypothesis length over reference length (0 when there is no reference text)."""
        return self.sys_len / self.ref_len if self.ref_len else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (
            f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} ratio = {self.ratio:.3f} "
            f"hyp_len = {self.sys_len} ref_len = {self.ref_len})"
        )


def corpus_bleu(
    hypotheses: Sequence[str],
    references_list: Sequence[Sequence[str | None]],
    *,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    tokenize: str = "13a",
    lowercase: bool = False,
    effective_order: bool = False,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> BleuScore:
    """Corpus BLEU of ``hypotheses`` against one or more reference sets, as ``sacrebleu.corpus_bleu``.

    ``references_list`` holds one list per reference set, each aligned with ``hypotheses``
    (sacrebleu's layout): ``corpus_bleu(hyps, [refs])`` for one reference per segment,
    ``corpus_bleu(hyps, [refs_a, refs_b])`` for two. A ``None`` entry means that segment has one
    reference fewer. Statistics are summed over segments, then BLEU is computed once.
    """
    _check_options(smooth_method, tokenize, max_ngram_order)
    per_segment = segment_references(hypotheses, references_list)

    sys_len = ref_len = 0
    correct = [0] * max_ngram_order
    total = [0] * max_ngram_order
    for hypothesis, references in zip(hypotheses, per_segment):
        stats = _segment_stats(hypothesis, references, tokenize, lowercase, max_ngram_order)
        sys_len += stats[0]
        ref_len += stats[1]
        for n in range(max_ngram_order):
            correct[n] += stats[2][n]
            total[n] += stats[3][n]
    return bleu_from_stats(
        correct, total, sys_len, ref_len, smooth_method, smooth_value, effective_order, max_ngram_order
    )


def segment_references(
    hypotheses: Sequence[str], references_list: Sequence[Sequence[str | None]]
) -> list[list[str]]:
    """Each segment's references from sacrebleu's layout (one list per reference set, aligned
    with the hypotheses; ``None``: that segment has one reference fewer), checked: ValueError for
    no hypotheses, a bare list of strings instead of reference sets, or a set of the wrong length."""
    if isinstance(hypotheses, str) or not hypotheses:
        raise ValueError("hypotheses must be a non-empty list of strings")
    if isinstance(references_list, str) or not references_list or isinstance(references_list[0], str):
        raise ValueError("references_list must be a list of reference sets, e.g. [refs] for one reference")
    for k, refs in enumerate(references_list):
        if len(refs) != len(hypotheses):
            raise ValueError(f"reference set {k} has {len(refs)} segments, expected {len(hypotheses)}")
    return [[refs[i] for refs in references_list if refs[i] is not None] for i in range(len(hypotheses))]


def sentence_bleu(
    hypothesis: str,
    references: Sequence[str],
    *,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    tokenize: str = "13a",
    lowercase: bool = False,
    effective_order: bool = True,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> BleuScore:
    """BLEU of one hypothesis against its references, as ``sacrebleu.sentence_bleu``.

    The defaults are sacrebleu's sentence-level ones: ``exp`` smoothing with effective order.
    """
    _check_options(smooth_method, tokenize, max_ngram_order)
    if isinstance(references, str):
        raise ValueError("references must be a list of strings, e.g. [reference] for one reference")
    sys_len, ref_len, correct, total = _segment_stats(
        hypothesis, list(references), tokenize, lowercase, max_ngram_order
    )
    return bleu_from_stats(
        correct, total, sys_len, ref_len, smooth_method, smooth_value, effective_order, max_ngram_order
    )


def segment_bleu_stats(
    hypothesis: str,
    references: Sequence[str],
    *,
    tokenize: str = "13a",
    lowercase: bool = False,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> tuple[int, int, list[int], list[int]]:
    """One segment's sufficient statistics (hypothesis length, closest reference length, matched
    and hypothesis n-grams per order): summed over segments, `bleu_from_stats` gives corpus BLEU
    (what a bootstrap over segments resamples)."""
    _check_options("exp", tokenize, max_ngram_order)
    return _segment_stats(hypothesis, list(references), tokenize, lowercase, max_ngram_order)


def bleu_from_stats(
    correct: Sequence[float],
    total: Sequence[float],
    sys_len: int,
    ref_len: int,
    smooth_method: str = "none",
    smooth_value: float | None = None,
    effective_order: bool = False,
    max_ngram_order: int = MAX_NGRAM_ORDER,
) -> BleuScore:
    """BLEU from its sufficient statistics: matched and total n-gram counts per order, and lengths."""
    _check_smooth_method(smooth_method)
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    if smooth_method in ("floor", "add-k") and not (math.isfinite(smooth_value) and smooth_value > 0):
        # a negative k would push matched counts up and totals down: a precision over 100%
        raise ValueError(f"smooth_value for {smooth_method!r} must be a positive number, got {smooth_value}")
    correct, total = list(correct), list(total)

    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * max_ngram_order
    if not any(correct):  # no match at any order: the score is 0 whatever the smoothing
        return BleuScore(0.0, precisions, bp, sys_len, ref_len, correct, total)

    exp_denominator = 1.0  # doubles with every zero precision ("exp" smoothing)
    order = max_ngram_order
    for n in range(1, max_ngram_order + 1):
        if smooth_method == "add-k" and n > 1:
            correct[n - 1] += smooth_value
            total[n - 1] += smooth_value
        if total[n - 1] == 0:  # hypothesis too short to have n-grams of this order
            break
        if effective_order:
            order = n
        if correct[n - 1] == 0:
            if smooth_method == "exp":
                exp_denominator *= 2
                precisions[n - 1] = 100.0 / (exp_denominator * total[n - 1])
            elif smooth_method == "floor":
                precisions[n - 1] = 100.0 * smooth_value / total[n - 1]
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]

    log_sum = sum(math.log(p) if p > 0 else LOG_OF_ZERO for p in precisions[:order])
    return BleuScore(bp * math.exp(log_sum / order), precisions, bp, sys_len, ref_len, correct, total)


def _check_smooth_method(smooth_method: str) -> None:
    if smooth_method not in SMOOTH_DEFAULTS:
        raise ValueError(f"smooth_method must be one of {list(SMOOTH_DEFAULTS)}, got {smooth_method!r}")


def _check_options(smooth_method: str, tokenize: str, max_ngram_order: int) -> None:
    _check_smooth_method(smooth_method)
    if tokenize not in TOKENIZERS:
        raise ValueError(f"tokenize must be one of {list(TOKENIZERS)}, got {tokenize!r}")
    if max_ngram_order < 1:
        raise ValueError(f"max_ngram_order must be >= 1, got {max_ngram_order}")


def _tokens(text: str, tokenize: str, lowercase: bool) -> list[str]:
    if lowercase:
        text = text.lower()
    text = text.rstrip()
    return (tokenize_13a(text) if tokenize == "13a" else text).split()


def _ngram_counts(tokens: list[str], max_order: int) -> Counter[tuple[str, ...]]:
    return Counter(
        tuple(tokens[i : i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1)
    )


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
    """The reference length closest to the hypothesis length; the shorter one on a tie."""
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


def _segment_stats(
    hypothesis: str, references: list[str], tokenize: str, lowercase: bool, max_order: int
) -> tuple[int, int, list[int], list[int]]:
    """(hyp_len, closest ref_len, matched n-grams per order, hypothesis n-grams per order)."""
    if not references:
        raise ValueError("every hypothesis needs at least one reference")
    max_ref_counts: Counter[tuple[str, ...]] = Counter()
    ref_lens = []
    for reference in references:
        ref_tokens = _tokens(reference, tokenize, lowercase)
        ref_lens.append(len(ref_tokens))
        # clip each n-gram by the reference that has the most of it
        for ngram, count in _ngram_counts(ref_tokens, max_order).items():
            max_ref_counts[ngram] = max(max_ref_counts[ngram], count)

    hyp_tokens = _tokens(hypothesis, tokenize, lowercase)
    correct = [0] * max_order
    total = [0] * max_order
    for ngram, count in _ngram_counts(hyp_tokens, max_order).items():
        total[len(ngram) - 1] += count
        correct[len(ngram) - 1] += min(count, max_ref_counts[ngram])
    return len(hyp_tokens), _closest_ref_len(len(hyp_tokens), ref_lens), correct, total
