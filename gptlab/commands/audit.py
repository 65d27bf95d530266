"""``gptlab audit NAME|all``: one subcommand per registered audit (gptlab.audit.AUDITS), its flags
built from the audit's options dataclass, plus the CLI's own: ``--model RUN``, ``--out DIR``,
``--json``, ``--overwrite``, ``--verdict interval|point`` and ``--fail-on fail|inconclusive`` (the
exit status as a CI gate, `EXIT_GATE`); and ``all``: the audits that apply to one run, into one
``audit.json`` and ``report.html``.

What only the command line does lives here: memorization's ``--corpus FILE --insert DIR`` (make
canaries, write the canaried corpus, train a run on it, then audit that run), and claiming the
output files and training folders before any work.
"""

from __future__ import annotations

import argparse

from gptlab.commands import add_overwrite, claim_training_folder, claim_views, positive_int, seed_type
from gptlab.commands.options import add_dataclass_arguments, dataclass_from_args

EXIT_GATE = 3  # --fail-on: some finding got the verdict it names (or a worse one)
GATE_HELP = (
    "exit with status 3 when some finding fails (fail), or fails or is inconclusive (inconclusive); "
    "default: the verdicts do not change the exit status"
)
VERDICT_HELP = (
    "interval (default): fail/pass only when the whole 95%% interval is past/within the threshold, "
    "else inconclusive, and a failed precondition makes its findings inconclusive; point: the value "
    "alone decides (the verdicts before intervals decided)"
)

# what --model takes, per audit (default: any run)
MODEL_HELP = {
    "memorization": "the run to audit (not needed with --insert)",
    "membership": "the target model's run directory",
    "injection": "an instruction run (gptlab finetune instruct)",
    "robustness": "a classifier run (gptlab finetune classify)",
    "poisoning": "the base model to fine-tune (a run directory)",
}
# the option naming a folder an audit trains new runs into, claimed before any work
TRAINING_FOLDERS = {
    "injection": ("defence", "--defence folder"),
    "robustness": ("adversarial_training", "--adversarial-training folder"),
    "poisoning": ("runs", "--runs folder"),
}


def register(subparsers) -> None:
    from gptlab.audit import AUDITS

    parser = subparsers.add_parser(
        "audit",
        help="security and robustness audits with confidence intervals, JSON and an HTML report",
        description="Measure what a model leaks (memorisation, membership) and how it breaks (prompt "
        "injection, adversarial text, bias, poisoning); each audit prints findings with 95% intervals "
        "and verdicts, --out writes JSON and plots, `audit all` writes one report.html.",
    )
    audits = parser.add_subparsers(dest="audit", metavar="AUDIT", required=True)
    for name, audit in AUDITS.items():
        if audit.cli:
            add_arguments(audits.add_parser(name, help=audit.help, description=audit.help), name)

    p = audits.add_parser(
        "all",
        help="every audit that applies to a run, into audit.json and report.html",
        description="Run every audit that applies to RUN into DIR (audit.json, report.html, plots) and "
        "print how many findings of each audit pass, fail, are inconclusive or info. "
        "Exit status: 0 when every audit that applies ran, 1 when the report lists some as not run "
        "(the reasons are in the report and on stderr), 2 on an error before any audit, 3 when "
        "--fail-on trips (before 1).",
    )
    p.add_argument("--model", required=True, metavar="RUN", help="a pretraining run or a classifier run")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for audit.json, report.html and plots")
    p.add_argument("--seed", type=seed_type, default=0)
    p.add_argument("--quick", action="store_true", help="fewer texts and samples (minutes on a laptop CPU)")
    _add_verdict_arguments(p)
    p.add_argument("--json", action="store_true", help="print the per-audit verdict counts as JSON")
    add_overwrite(p, "the report files in DIR")
    p.set_defaults(func=run_all)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The flags of ``gptlab audit NAME``: the audit's options, then the CLI's own."""
    from gptlab.audit import AUDITS

    memorization = name == "memorization"
    parser.add_argument(
        "--model", required=not memorization, metavar="RUN", help=MODEL_HELP.get(name, "the run to audit")
    )
    add_dataclass_arguments(parser, AUDITS[name].options)
    if memorization:
        _add_insert_arguments(parser)
    parser.add_argument("--out", metavar="DIR", help=f"write {name}.json and the plots into DIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_verdict_arguments(parser)
    add_overwrite(parser, f"DIR/{name}.json" + (" and the --insert folder" if memorization else ""))
    parser.set_defaults(func=run, audit=name)


def _add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verdict", choices=["interval", "point"], default="interval", help=VERDICT_HELP)
    parser.add_argument("--fail-on", choices=["fail", "inconclusive"], help=GATE_HELP)


def gate(results, fail_on: str | None) -> bool:
    """Whether ``--fail-on`` trips: some finding fails (or, with "inconclusive", is inconclusive)."""
    if fail_on is None:
        return False
    tripping = {"fail"} if fail_on == "fail" else {"fail", "inconclusive"}
    return any(j.verdict in tripping for r in results for j in r.judgements())


def run(args: argparse.Namespace) -> int:
    """``gptlab audit NAME``: claim the outputs, run the audit on the run, print and save it."""
    from gptlab.audit import AUDITS
    from gptlab.run import Run

    audit = AUDITS[args.audit]
    claim_views(args, [f"{args.audit}.json"])  # before the work, not after
    if args.audit in TRAINING_FOLDERS:
        field, what = TRAINING_FOLDERS[args.audit]
        claim_training_folder(args, getattr(args, field), what)
    options = dataclass_from_args(audit.options, args)  # bias and poisoning train into --out: options.out
    if args.audit == "memorization":
        target, options = _memorization_target(args, options)
    else:
        target = Run.open(args.model)
    return emit(audit.run(target, options), args)


def run_all(args: argparse.Namespace) -> int:
    """Exit 0 when every audit that applies ran, 1 when the report lists some as not run (with
    why), 2 on an error (the model cannot be loaded, --out is unusable) before any audit, 3 when
    ``--fail-on`` trips (whatever ran or not)."""
    import json
    import sys

    from gptlab.audit.all import applicable, audit_all
    from gptlab.audit.report import AUDIT_JSON, REPORT_HTML, counts, counts_table
    from gptlab.outputs import claim_files
    from gptlab.run import Run

    target = Run.open(args.model)
    names = applicable(target)
    claim_files(args.out, [AUDIT_JSON, REPORT_HTML] + [f"{name}.json" for name in names],
                overwrite=args.overwrite, sources=[args.model])  # fmt: skip
    path, skipped, results = audit_all(
        target, args.out, seed=args.seed, quick=args.quick, names=names, verdict_mode=args.verdict
    )
    for name, why in skipped.items():
        print(f"not run: {name}: {why}", file=sys.stderr)
    for result in results:
        for p in result.failed_preconditions:
            print(f"precondition failed: {result.name}: {p.name}: {p.detail}", file=sys.stderr)
    if args.json:
        doc = {"report": str(path), "verdict_mode": args.verdict, "counts": counts(results), "skipped": skipped,
               "preconditions_failed": {r.name: [p.name for p in r.failed_preconditions] for r in results}}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        print(counts_table(results))
        print(f"wrote {path}")
    if gate(results, args.fail_on):
        return EXIT_GATE
    return 1 if skipped else 0


def emit(result, args: argparse.Namespace) -> int:
    """What every ``gptlab audit NAME`` does with its result: judge it in ``--verdict`` mode, save
    JSON and plots into --out, print the findings table, or the JSON with --json; the exit status is
    `EXIT_GATE` when ``--fail-on`` trips."""
    import json

    result.verdict_mode = getattr(args, "verdict", "interval")
    if getattr(args, "out", None):
        result.save(args.out)
    print(json.dumps(result.to_dict(), indent=2, default=float) if args.json else result.table())
    return EXIT_GATE if gate([result], getattr(args, "fail_on", None)) else 0


# --- memorization --insert: make a canaried run, then audit it ---------------------------------------


def _add_insert_arguments(parser: argparse.ArgumentParser) -> None:
    from gptlab.audit.memorization import DEFAULT_FORMAT, DIGITS
    from gptlab.commands import int_list
    from gptlab.commands.train import add_overrides_argument

    parser.add_argument(
        "--corpus", metavar="FILE", help="text corpus to insert canaries into (with --insert)"
    )
    parser.add_argument(
        "--insert",
        metavar="DIR",
        help="write DIR/corpus.txt (canaried) and DIR/canaries.json, train DIR/run on it, audit it",
    )
    parser.add_argument(
        "--config", default="tiny-cpu", help="training config for --insert (default tiny-cpu)"
    )
    add_overrides_argument(parser, help="config overrides for --insert, e.g. train.max_steps=500")
    parser.add_argument(
        "--format",
        default=DEFAULT_FORMAT,
        help=f"canary format; each placeholder is filled at random (default: {DEFAULT_FORMAT!r})",
    )
    parser.add_argument("--placeholder", default="N", help="placeholder character of --format (default N)")
    parser.add_argument("--alphabet", default=DIGITS, help="values of a placeholder (default: digits)")
    parser.add_argument(
        "--repeats",
        type=int_list,
        default=[0, 1, 4, 16],
        help="copies per canary, comma-separated (0,1,4,16)",
    )
    parser.add_argument(
        "--per-repeat", type=positive_int, default=2, help="canaries per repeat count (default 2)"
    )


def _memorization_target(args: argparse.Namespace, options):
    """The run memorization audits: ``--model``, or the one ``--insert`` trains (whose canaries
    file it then reads unless --canaries names one)."""
    from dataclasses import replace

    from gptlab.errors import GptlabError
    from gptlab.run import Run

    if args.insert:
        model_dir, inserted_file = _insert_and_train(args)
        return Run.open(model_dir), replace(options, canaries=options.canaries or inserted_file)
    if args.model:
        return Run.open(args.model), options
    raise GptlabError("give --model RUN (a run to audit) or --corpus FILE --insert DIR (make one)")


def _insert_and_train(args) -> tuple[str, str]:
    """Write the canaried corpus + canaries.json, train on it; returns (run dir, canaries file)."""
    from gptlab.audit.canaried import train_with_canaries
    from gptlab.config import load_config
    from gptlab.data.corpus import read_text_file
    from gptlab.errors import GptlabError
    from gptlab.outputs import claim_folder

    if not args.corpus:
        raise GptlabError("--insert needs --corpus FILE: the text to insert the canaries into")
    out = claim_folder(args.insert, what="--insert folder", overwrite=args.overwrite, sources=[args.corpus])
    config = load_config(args.config, list(args.overrides))
    run_dir, canaries_file = train_with_canaries(
        config,
        read_text_file(args.corpus),
        out,
        args.repeats,
        args.per_repeat,
        args.format,
        args.seed,
        args.placeholder,
        args.alphabet,
    )
    return str(run_dir), str(canaries_file)
