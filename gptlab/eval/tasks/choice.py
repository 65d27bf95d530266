"""Multiple-choice accuracy as lm-evaluation-harness computes it (``ConfigurableTask.process_results``
for ``multiple_choice``): the prediction is the choice with the highest log-likelihood (the first
one on a tie, as ``numpy.argmax``), and ``acc_norm`` divides each log-likelihood by the choice's
length in characters (``len(choice)``, which the harness uses for acc_norm; bytes only for its
separate acc_bytes) before taking it."""

from __future__ import annotations

from collections.abc import Sequence

from gptlab.eval.tasks.base import Loglikelihood


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first on a tie."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def accuracy(answers: Sequence[Loglikelihood], gold: int) -> float:
    return 1.0 if argmax([a.logprob for a in answers]) == gold else 0.0


def normalised_accuracy(answers: Sequence[Loglikelihood], gold: int, choices: Sequence[str]) -> float:
    return 1.0 if argmax([a.logprob / len(c) for a, c in zip(answers, choices, strict=True)]) == gold else 0.0
