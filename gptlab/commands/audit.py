"""``gptlab audit memorization|membership|injection|robustness|bias|poisoning|all``: each audit's
own flags live in gptlab/commands/audit_<name>.py (``HELP``, ``add_arguments``, ``run``); this
file wires them under one verb and runs ``all``: the audits that apply to one run, into one
``audit.json`` and ``report.html``."""

from __future__ import annotations

import argparse
import importlib

from gptlab.commands import add_overwrite, seed_type

AUDITS = ("memorization", "membership", "injection", "robustness", "bias", "poisoning")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="security and robustness audits with confidence intervals, JSON and an HTML report",
        description="Measure what a model leaks (memorisation, membership) and how it breaks (prompt "
        "injection, adversarial text, bias, poisoning); each audit prints findings with 95% intervals "
        "and verdicts, --out writes JSON and plots, `audit all` writes one report.html.",
    )
    audits = parser.add_subparsers(dest="audit", metavar="AUDIT", required=True)
    for name in AUDITS:
        module = importlib.import_module(f"gptlab.commands.audit_{name}")
        p = audits.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)

    p = audits.add_parser(
        "all",
        help="every audit that applies to a run, into audit.json and report.html",
        description="Run every audit that applies to RUN into DIR (audit.json, report.html, plots). "
        "Exit status: 0 when every audit that applies ran, 1 when the report lists some as not run "
        "(the reasons are in the report and on stderr), 2 on an error before any audit.",
    )
    p.add_argument("--model", required=True, metavar="RUN", help="a pretraining run or a classifier run")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for audit.json, report.html and plots")
    p.add_argument("--seed", type=seed_type, default=0)
    p.add_argument("--quick", action="store_true", help="fewer texts and samples (minutes on a laptop CPU)")
    add_overwrite(p, "the report files in DIR")
    p.set_defaults(func=run_all)


def run_all(args: argparse.Namespace) -> int:
    """Exit 0 when every audit that applies ran, 1 when the report lists some as not run (with
    why), 2 on an error (the model cannot be loaded, --out is unusable) before any audit."""
    import sys

    from gptlab.audit.all import applicable, audit_all
    from gptlab.audit.report import AUDIT_JSON, REPORT_HTML
    from gptlab.outputs import claim_files

    names = [AUDIT_JSON, REPORT_HTML] + [f"{name}.json" for name in applicable(args.model)]
    claim_files(args.out, names, overwrite=args.overwrite, sources=[args.model])
    path, skipped = audit_all(args.model, args.out, seed=args.seed, quick=args.quick)
    for name, why in skipped.items():
        print(f"not run: {name}: {why}", file=sys.stderr)
    print(f"wrote {path}")
    return 1 if skipped else 0


def emit(result, args: argparse.Namespace) -> int:
    """What every ``gptlab audit NAME`` does with its result: save JSON and plots into --out, print
    the findings table, or the JSON with --json."""
    import json

    if getattr(args, "out", None):
        result.save(args.out)
    print(json.dumps(result.to_dict(), indent=2, default=float) if args.json else result.table())
    return 0
