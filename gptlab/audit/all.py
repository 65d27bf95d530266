"""``gptlab audit all``: every audit that applies to one run, into one audit.json and report.html.

Which audits apply is each registered audit's ``applies_to`` (gptlab.audit.AUDITS):

- a language model (a pretraining run, a converted or quantized model): memorisation (canaries
  when the run's corpus has a canaries.json, k-extractability always), membership (train vs val
  windows), bias (the built-in counterfactual probes) and the typo shift of its bits per character;
- an instruction-tuned run (``gptlab finetune instruct``): prompt injection and leaking too;
- a classifier run: robustness (character noise, the greedy and HotFlip attacks) on its held-out
  test split.

Each audit runs with its options' defaults (``--quick``: their ``quick()`` variant, fewer samples
and resamples, the same estimators), so ``audit all`` gives the same numbers as the single
commands. The model is loaded once and shared by the audits (they only read it). An audit that
cannot run on this run (no splits, no canaries, ...) is listed in the report with the reason
instead of failing the whole report. Poisoning, DP-SGD, CDA and adversarial training need training
runs of their own: they are experiments (``gptlab audit poisoning``, ``--dp-epsilon``, ``audit bias
--cda``, ``audit robustness --adversarial-training``), not checks of a finished model, so ``all``
does not start them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptlab.audit import AUDITS
from gptlab.audit.common import AuditResult
from gptlab.errors import GptlabError
from gptlab.run import Run


@dataclass(frozen=True)
class SharedModelRun(Run):
    """A Run whose model (and classifier) is loaded once and handed to every audit that asks:
    the audits of one report only read the model."""

    loaded: dict[tuple, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, run: Run) -> SharedModelRun:
        return cls(run.path, run.kind, run.meta)

    def load(self, device: str = "cpu", dtype=None):
        key = ("model", device, dtype)
        if key not in self.loaded:
            self.loaded[key] = super().load(device, dtype)
        return self.loaded[key]

    def load_classifier(self, device: str = "cpu"):
        key = ("classifier", device)
        if key not in self.loaded:
            self.loaded[key] = super().load_classifier(device)
        return self.loaded[key]


def applicable(run: Run) -> list[str]:
    """The audits ``all`` runs on this run, in report order."""
    return [name for name, audit in AUDITS.items() if audit.applies_to(run)]


def run_audit(name: str, run: Run, seed: int = 0, quick: bool = False) -> AuditResult:
    """One registered audit with its default (or ``quick``) options on ``run``."""
    audit = AUDITS[name]
    options = audit.options.quick(seed=seed) if quick else audit.options(seed=seed)
    return audit.run(run, options)


def audit_all(
    run: str | Path | Run,
    out_dir: str | Path,
    seed: int = 0,
    quick: bool = False,
    names: list[str] | None = None,
    verdict_mode: str = "interval",
) -> tuple[Path, dict[str, str], list[AuditResult]]:
    """Run the applicable audits (or ``names``) on ``run``; write audit.json, report.html and each
    audit's files into ``out_dir``, verdicts decided in ``verdict_mode`` ("interval" or "point");
    return the report's path, ``{audit: why it could not run}`` (empty when every audit ran) and
    the results. A model that cannot be loaded is a GptlabError before any audit:
    an empty report would look like a clean bill of health."""
    from gptlab.audit.report import write_report

    run = SharedModelRun.of(run if isinstance(run, Run) else Run.open(run))
    names = applicable(run) if names is None else names
    run.load()  # the load error itself, not one "skipped" line per audit
    results, skipped = [], {}
    for name in names:
        try:
            result = run_audit(name, run, seed, quick)
            result.verdict_mode = verdict_mode
            results.append(result)
        except GptlabError as e:  # this audit does not apply to this run: say why, go on
            skipped[name] = str(e)
    path = write_report(results, out_dir, title=f"gptlab security audit of {run.path}", skipped=skipped)
    return path, skipped, results
