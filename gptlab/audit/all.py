"""``gptlab audit all``: every audit that applies to one run, into one audit.json and report.html.

Which audits apply depends on the run:

- a pretraining run (model + its data splits): memorisation (canaries when the run's corpus has a
  canaries.json, k-extractability always), membership (train vs val windows), bias (the built-in
  counterfactual probes) and the typo shift of the LM's bits per character;
- an instruction-tuned run (its config names a prompt template): prompt injection and leaking too;
- a classifier run: robustness (character noise, the greedy and HotFlip attacks) on its held-out
  test split.

Each audit is run with its CLI defaults (``--quick`` lowers the sample counts), so ``audit all``
gives the same numbers as the single commands. An audit that cannot run on this run (no splits, no
canaries, ...) is listed in the report with the reason instead of failing the whole report.
Poisoning, DP-SGD, CDA and adversarial training need training runs of their own: they are
experiments (``gptlab audit poisoning``, ``--dp-epsilon``, ``audit bias --cda``, ``audit robustness
--adversarial-training``), not checks of a finished model, so ``all`` does not start them.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from gptlab.audit.common import AuditResult, Finding
from gptlab.errors import GptlabError

# audit -> extra flags with --quick (fewer samples and resamples; the same estimators)
QUICK = {
    "memorization": ["--samples", "500", "--windows", "50", "--bootstrap", "200"],
    "membership": ["--windows", "100", "--bootstrap", "200"],
    "bias": ["--n-perm", "2000", "--n-boot", "200"],
    "injection": [],
    "robustness": ["--max-texts", "100", "--greedy-texts", "20", "--hotflip-texts", "20"],
}


def _is_instruct(run: Path) -> bool:
    """An instruction-tuned run: `gptlab finetune instruct` writes "finetune": "instruct" into the
    extra metadata of model.json."""
    from gptlab.rundir import read_model_json

    try:
        _, meta = read_model_json(run)
    except GptlabError:
        return False
    return (meta.get("extra") or {}).get("finetune") == "instruct"


def applicable(run: str | Path) -> list[str]:
    """The audits ``all`` runs for this run directory, in report order."""
    run = Path(run)
    if not run.exists():
        raise GptlabError(f"{run} does not exist: give a run directory made by gptlab")
    from gptlab.run import Run

    if Run.open(run).kind == "classifier":
        return ["robustness"]
    names = ["memorization", "membership", "bias"]
    if _is_instruct(run):
        names.append("injection")
    return names + ["typos"]


def run_audit(name: str, run: str | Path, seed: int = 0, quick: bool = False) -> AuditResult:
    """One audit with its CLI defaults on ``run``; GptlabError if it does not apply."""
    module = importlib.import_module(f"gptlab.commands.audit_{name}")
    parser = argparse.ArgumentParser(prog=f"gptlab audit {name}")
    module.add_arguments(parser)
    argv = ["--model", str(run), "--seed", str(seed)] + (QUICK.get(name, []) if quick else [])
    return module.compute(parser.parse_args(argv))


def typo_audit(run: str | Path, seed: int = 0, quick: bool = False) -> AuditResult:
    """The LM half of the robustness audit: bits per character on held-out windows, clean and with
    each kind of typo (gptlab.audit.robustness.lm_typo_shift)."""
    from gptlab.audit.memorization import run_windows
    from gptlab.audit.perturb import KINDS
    from gptlab.audit.robustness import lm_typo_shift
    from gptlab.rundir import load_model

    model, tokenizer = load_model(run)
    n = 50 if quick else 200
    windows = run_windows(run, "val", n, min(64, model.config.block_size), seed)
    texts = [tokenizer.decode(w) for w in windows]
    rates = (0.05, 0.2)
    shift = lm_typo_shift(model, tokenizer, texts, KINDS, rates, seed)
    findings = [
        Finding(
            "typos (LM)",
            f"bits/char shift, {kind} @ {rates[-1]:g}",
            shift["perturbed"][f"{kind}@{rates[-1]:g}"]["bits_per_char_shift"],
            shift["perturbed"][f"{kind}@{rates[-1]:g}"]["bits_per_char_shift_interval"],
            note=f"clean {shift['clean']['bits_per_char']:.3f} bits/char",
        )
        for kind in KINDS
    ]
    return AuditResult("typos", findings, {"lm_typos": shift, "texts": len(texts)})


def audit_all(
    run: str | Path, out_dir: str | Path, seed: int = 0, quick: bool = False
) -> tuple[Path, dict[str, str]]:
    """Run the applicable audits on ``run``; write audit.json, report.html and each audit's files
    into ``out_dir``; return the report's path and ``{audit: why it could not run}`` (empty when
    every applicable audit ran). A model that cannot be loaded is a GptlabError before any audit:
    an empty report would look like a clean bill of health."""
    from gptlab.audit.report import write_report
    from gptlab.run import Run

    names = applicable(run)
    Run.open(run).load()  # the load error itself, not one "skipped" line per audit
    results, skipped = [], {}
    for name in names:
        try:
            result = typo_audit(run, seed, quick) if name == "typos" else run_audit(name, run, seed, quick)
        except GptlabError as e:  # this audit does not apply to this run: say why, go on
            skipped[name] = str(e)
            continue
        results.append(result)
    path = write_report(results, out_dir, title=f"gptlab security audit of {run}", skipped=skipped)
    return path, skipped
