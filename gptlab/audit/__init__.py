"""Security and robustness audits: what a model leaks (memorisation, extraction, membership), how
it breaks (prompt injection, adversarial text, bias, poisoning), and what the mitigations (DP-SGD,
guards, adversarial training, counterfactual augmentation, poison detection) change.

Every audit is a module ``gptlab/audit/<name>.py`` with an options dataclass (the single source of
its defaults and help texts, with a ``quick()`` variant) and ``run(run: Run, options) ->
AuditResult`` (gptlab.audit.common: findings with a value, a confidence interval and a verdict
against a threshold, plus plots). `AUDITS` below registers them: ``gptlab audit NAME`` builds its
flags from the options (gptlab/commands/audit.py), and ``gptlab audit all`` runs every audit whose
``applies_to`` accepts the run, into one HTML report (gptlab.audit.all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gptlab.audit import bias, injection, membership, memorization, poisoning, robustness
from gptlab.audit.common import AuditResult
from gptlab.run import Run


@dataclass(frozen=True)
class Audit:
    """One registered audit: ``options`` (a dataclass class with ``quick()``), ``run(run, options)``,
    ``applies_to(run)`` (whether ``audit all`` runs it on this run), the CLI's one-line ``help``,
    and ``cli`` (False: only ``audit all`` runs it)."""

    options: type
    run: Callable[[Run, Any], AuditResult]
    applies_to: Callable[[Run], bool]
    help: str
    cli: bool = True


def _language_model(run: Run) -> bool:
    return run.kind != "classifier"


def _never(run: Run) -> bool:
    """Experiments that train runs of their own (poisoning): not checks of a finished model."""
    return False


# In report order: what `audit all` runs on a language model, then what it runs on a classifier.
AUDITS: dict[str, Audit] = {
    "memorization": Audit(
        memorization.MemorizationOptions, memorization.run, _language_model,
        "canary exposure (secret sharer), greedy canary extraction, k-extractable train vs held-out",
    ),
    "membership": Audit(
        membership.MembershipOptions, membership.run, _language_model,
        "membership inference: loss, zlib, reference-calibrated and classifier attacks; AUC, TPR@low FPR",
    ),
    "bias": Audit(
        bias.BiasOptions, bias.run, _language_model,
        "counterfactual bias probes (log-prob gap, permutation test), optionally CDA before/after",
    ),
    "injection": Audit(
        injection.InjectionOptions, injection.run, lambda run: run.kind == "instruct",
        "prompt injection / prompt leaking success rates per attack family; input guard; training-time defence",
    ),
    "typos": Audit(
        robustness.TyposOptions, robustness.run_typos, _language_model,
        "an LM's bits per character on held-out text, clean and with typos", cli=False,
    ),
    "robustness": Audit(
        robustness.RobustnessOptions, robustness.run, lambda run: run.kind == "classifier",
        "classifier accuracy under typos, homoglyphs and HotFlip; LM bits/char under typos; adversarial training",
    ),
    "poisoning": Audit(
        poisoning.PoisoningOptions, poisoning.run, _never,
        "backdoor a classifier through poisoned training data: clean accuracy, ASR, poison detection",
    ),
}  # fmt: skip
