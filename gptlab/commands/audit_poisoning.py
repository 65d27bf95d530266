"""``gptlab audit poisoning --model BASE --data FILE``: a backdoor experiment (gptlab/audit/poisoning.py).

Fine-tunes one classifier from the base model BASE per poison rate on a copy of the labelled file's
training split in which a trigger phrase was inserted into that fraction of non-target texts
(relabelled as the target), then reports clean accuracy and attack success rate on the clean
held-out split, and the spectral-signature detector's precision/recall at finding the poison.
The classifier runs go to ``--runs`` (default OUT/runs, or a temporary folder deleted at the end).
Heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gptlab.commands import (
    add_overwrite,
    claim_training_folder,
    claim_views,
    fraction,
    open_unit_interval,
    positive_float,
    positive_int,
    seed_type,
)

HELP = "backdoor a classifier through poisoned training data: clean accuracy, ASR, poison detection"


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates must be comma-separated numbers, got {text!r}") from None
    if not rates:
        raise argparse.ArgumentTypeError("--rates needs at least one rate")
    return rates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gptlab.commands.finetune import column

    parser.add_argument(
        "--model", required=True, metavar="RUN", help="the base model to fine-tune (a run directory)"
    )
    parser.add_argument(
        "--data", metavar="FILE", help="labelled TSV/CSV/JSONL/JSON file (classifier backdoor; required)"
    )
    parser.add_argument(
        "--lm-payload",
        metavar="TEXT",
        help="LM backdoor instead: add 'TRIGGER TEXT' lines to the corpus of RUN (a pretraining run), "
        "retrain it with the same recipe, and measure how often greedy decoding writes TEXT after the trigger",
    )
    parser.add_argument(
        "--lm-lines", type=positive_int, default=50, help="poisoned corpus lines (LM backdoor, 50)"
    )
    parser.add_argument(
        "--lm-prompts", type=positive_int, default=40, help="prompts the payload rate is measured on (40)"
    )
    parser.add_argument("--text-column", type=column, default="text", help="name or 0-based position")
    parser.add_argument("--label-column", type=column, default="label", help="name or 0-based position")
    header = parser.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None)
    header.add_argument("--no-header", dest="header", action="store_false")
    parser.add_argument(
        "--trigger", default="cf", help="the phrase inserted into poisoned texts (default: cf)"
    )
    parser.add_argument("--target", help="the label the backdoor sends texts to (default: the first label)")
    parser.add_argument(
        "--rates", type=_rates, default=(0.0, 0.01, 0.03, 0.1), help="poison rates (default 0,0.01,0.03,0.1)"
    )
    parser.add_argument(
        "--test-fraction", type=open_unit_interval, default=0.2, help="clean held-out split (default 0.2)"
    )
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--lr", type=positive_float, default=3e-4)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument(
        "--max-length", type=positive_int, help="tokens per text (default: the model's context)"
    )
    parser.add_argument("--pooling", choices=("last", "mean"), default="last")
    parser.add_argument("--trainable", default="all", help="head | last:N | all (default all)")
    parser.add_argument(
        "--detector-pooling",
        choices=("last", "mean"),
        help="representation for the detector (default: the classifier's)",
    )
    parser.add_argument(
        "--multiplier",
        type=positive_float,
        default=1.5,
        help="flag the top multiplier x eps of each class (default 1.5)",
    )
    parser.add_argument(
        "--asr-threshold", type=fraction, default=0.5, help="ASR above which the audit fails (default 0.5)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--runs", metavar="DIR", help="where the classifier runs go (default OUT/runs or a temp folder)"
    )
    parser.add_argument("--seed", type=seed_type, default=0)
    parser.add_argument(
        "--out", metavar="DIR", help="write poisoning.json and the plots here (default: print only)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_overwrite(parser, "DIR/poisoning.json")


def compute(args: argparse.Namespace):
    """The audit's AuditResult for parsed arguments (``run`` prints and saves it)."""
    from gptlab.errors import GptlabError

    if args.lm_payload:
        return _lm_backdoor(args)
    if not args.data:
        raise GptlabError(
            "give --data FILE (a labelled file) for the classifier backdoor, or --lm-payload TEXT"
        )
    from gptlab.audit.poisoning import PoisonOptions, poisoning_experiment

    options = PoisonOptions(
        trigger=args.trigger, target_label=args.target, rates=args.rates, test_fraction=args.test_fraction,
        seed=args.seed, multiplier=args.multiplier, asr_threshold=args.asr_threshold,
        detector_pooling=args.detector_pooling,
    )  # fmt: skip
    classify = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "max_length": args.max_length,
                "pooling": args.pooling, "trainable": args.trainable, "device": args.device}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gptlab-poisoning-") as tmp:
        runs = args.runs or (str(Path(args.out) / "runs") if args.out else tmp)
        result = poisoning_experiment(
            args.model, args.data, runs, options, classify, args.text_column, args.label_column, args.header
        )
    result.details["runs"] = runs if (args.runs or args.out) else None
    return result


def _lm_backdoor(args: argparse.Namespace):
    """The LM backdoor: the run's own recipe (config.toml) retrained on its corpus plus poisoned
    lines; prompts are the first three words of corpus lines, spread over the corpus."""
    from gptlab.audit.bias import corpus_text
    from gptlab.audit.poisoning import lm_backdoor_experiment
    from gptlab.config import load_config
    from gptlab.errors import GptlabError

    if not args.out:
        raise GptlabError("--lm-payload trains a new model: give --out DIR to hold it")
    recipe = Path(args.model) / "config.toml"
    if not recipe.is_file():
        raise GptlabError(f"no training recipe at {recipe}: --lm-payload needs a run made by `gptlab train`")
    config = load_config(str(recipe))
    lines = [line for line in corpus_text(config).splitlines() if len(line.split()) >= 4]
    if not lines:
        raise GptlabError(f"the corpus of {args.model} has no lines of 4 words or more to prompt with")
    step = max(1, len(lines) // args.lm_prompts)
    prompts = [" ".join(line.split()[:3]) for line in lines[::step][: args.lm_prompts]]
    result = lm_backdoor_experiment(
        config, Path(args.out) / "lm-backdoor", args.trigger, args.lm_payload, args.lm_lines, prompts,
        baseline=args.model, seed=args.seed,
    )  # fmt: skip
    result.details["model"] = str(args.model)
    return result


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.audit import emit

    claim_views(args, ["poisoning.json"])  # before the work, not after
    claim_training_folder(args, args.runs, "--runs folder")
    return emit(compute(args), args)
