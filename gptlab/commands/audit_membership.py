"""``gptlab audit membership --model RUN``: membership inference with loss, zlib-ratio and
reference-calibrated scores and a cross-validated attack classifier; ROC AUC and TPR at 1% and
0.1% FPR with bootstrap intervals, and the ROC curves (gptlab/audit/membership.py).

Members and non-members: ``--members FILE`` and ``--nonmembers FILE`` (one text per non-empty
line), or by default ``--windows`` random windows of the run's training split (members) and of its
validation split (non-members), decoded to text. ``--reference RUN`` is a model trained on data
disjoint from the target's (it adds the calibrated score).

Heavy imports (torch, scikit-learn, the audit) happen inside ``run`` so ``gptlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

from gptlab.commands import add_overwrite, claim_views, fraction, int_at_least, positive_int, seed_type

HELP = "membership inference: loss, zlib, reference-calibrated and classifier attacks; AUC, TPR@low FPR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN", help="the target model's run directory")
    parser.add_argument(
        "--members", metavar="FILE", help="training texts, one per line (default: run's train split)"
    )
    parser.add_argument(
        "--nonmembers", metavar="FILE", help="held-out texts, one per line (default: the run's val split)"
    )
    parser.add_argument(
        "--reference", metavar="RUN", help="a model trained on data disjoint from the target's"
    )
    parser.add_argument(
        "--windows", type=positive_int, default=500, help="windows per split when reading the run (500)"
    )
    parser.add_argument(
        "--window-tokens",
        type=positive_int,
        default=64,
        help="tokens per window (default 64, at most the context)",
    )
    parser.add_argument(
        "--max-texts", type=positive_int, default=2000, help="at most this many texts per side (2000)"
    )
    parser.add_argument(
        "--folds", type=int_at_least(2), default=5, help="cross-validation folds of the attack classifier (5)"
    )
    parser.add_argument("--no-classifier", action="store_true", help="skip the gradient-boosting attack")
    parser.add_argument(
        "--bootstrap", type=positive_int, default=1000, help="bootstrap resamples (default 1000)"
    )
    parser.add_argument(
        "--auc-threshold", type=fraction, default=0.6, help="fail when an AUC exceeds this (0.6)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument(
        "--seed", type=seed_type, default=0, help="seed of the windows, folds and bootstrap (0)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="write membership.json, roc.png and roc_log.png into DIR"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_overwrite(parser, "DIR/membership.json")


def _read_lines(path: str) -> list[str]:
    from gptlab.data.corpus import read_text_file

    return [line for line in read_text_file(path).splitlines() if line.strip()]


def compute(args: argparse.Namespace):
    """The audit's AuditResult for parsed arguments (``run`` prints and saves it)."""
    import random

    from gptlab.audit.membership import audit_membership
    from gptlab.audit.memorization import run_windows
    from gptlab.errors import GptlabError
    from gptlab.rundir import load_model

    model, tokenizer = load_model(args.model, device=args.device)
    reference = load_model(args.reference, device=args.device) if args.reference else None
    if bool(args.members) != bool(args.nonmembers):
        raise GptlabError("give both --members and --nonmembers, or neither (then the run's splits are used)")
    if args.members:
        members, nonmembers = _read_lines(args.members), _read_lines(args.nonmembers)
        source = {"members": args.members, "nonmembers": args.nonmembers}
    else:
        length = min(args.window_tokens, model.config.block_size)
        members = [
            tokenizer.decode(w) for w in run_windows(args.model, "train", args.windows, length, args.seed)
        ]
        nonmembers = [
            tokenizer.decode(w) for w in run_windows(args.model, "val", args.windows, length, args.seed + 1)
        ]
        source = {
            "members": "train split windows",
            "nonmembers": "val split windows",
            "window_tokens": length,
        }
    rng = random.Random(args.seed)
    if len(members) > args.max_texts:
        members = rng.sample(members, args.max_texts)
    if len(nonmembers) > args.max_texts:
        nonmembers = rng.sample(nonmembers, args.max_texts)
    result = audit_membership(
        model,
        tokenizer,
        members,
        nonmembers,
        reference=reference,
        folds=args.folds,
        classifier=not args.no_classifier,
        n_boot=args.bootstrap,
        seed=args.seed,
        auc_threshold=args.auc_threshold,
    )
    result.details["model"] = args.model
    result.details["reference"] = args.reference
    result.details["source"] = source
    return result


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.audit import emit

    claim_views(args, ["membership.json"])  # before the work, not after
    return emit(compute(args), args)
