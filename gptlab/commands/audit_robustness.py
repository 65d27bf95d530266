"""``gptlab audit robustness --model CLASSIFIER_RUN``: accuracy of a classifier under character
noise (swap, insert, delete, keyboard, homoglyph) at several rates, under a greedy character
attack and under HotFlip; with ``--lm RUN`` the bits-per-character shift of a language model under
the same typos; with ``--adversarial-training DIR`` a clean and a noise-augmented classifier
trained side by side and compared (gptlab/audit/robustness.py says how each is measured).

Heavy imports (torch, the audit) happen inside ``run`` so ``gptlab --help`` stays fast.
"""

from __future__ import annotations

import argparse

from gptlab.commands import (
    add_overwrite,
    claim_training_folder,
    claim_views,
    fraction,
    nonnegative_int,
    positive_int,
    seed_type,
)

HELP = (
    "classifier accuracy under typos, homoglyphs and HotFlip; LM bits/char under typos; adversarial training"
)


def _floats(spec: str) -> list[float]:
    try:
        return [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {spec!r}") from None


def _words(spec: str) -> list[str]:
    return [x.strip() for x in spec.split(",") if x.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="RUN", help="a classifier run (gptlab finetune classify)"
    )
    parser.add_argument(
        "--data", metavar="FILE", help="labelled texts to attack (default: the run's test_split.jsonl)"
    )
    parser.add_argument("--text-column", default="text", help="text column of --data (default: text)")
    parser.add_argument("--label-column", default="label", help="label column of --data (default: label)")
    parser.add_argument(
        "--kinds",
        type=_words,
        default=["swap", "insert", "delete", "keyboard", "homoglyph"],
        help="perturbations, comma-separated (default: swap,insert,delete,keyboard,homoglyph)",
    )
    parser.add_argument(
        "--rates",
        type=_floats,
        default=[0.02, 0.05, 0.1, 0.2],
        help="edits per character, comma-separated (default: 0.02,0.05,0.1,0.2); findings use the largest",
    )
    parser.add_argument(
        "--max-texts", type=positive_int, default=500, help="texts attacked with noise (default 500)"
    )
    parser.add_argument(
        "--greedy-edits", type=nonnegative_int, default=5, help="greedy char attack: edit budget (0 = off)"
    )
    parser.add_argument(
        "--greedy-candidates", type=positive_int, default=16, help="random edits tried per round (16)"
    )
    parser.add_argument(
        "--greedy-texts", type=positive_int, default=100, help="texts for the greedy attack (100)"
    )
    parser.add_argument(
        "--hotflip-budget", type=nonnegative_int, default=5, help="HotFlip: token flips allowed (0 = off)"
    )
    parser.add_argument(
        "--hotflip-candidates",
        type=positive_int,
        default=8,
        help="first-order best flips evaluated exactly per round (default 8; 1 = pure HotFlip)",
    )
    parser.add_argument(
        "--hotflip-texts", type=positive_int, default=100, help="texts for HotFlip (default 100)"
    )
    parser.add_argument(
        "--lm", metavar="RUN", help="a language-model run: measure its bits/char shift under the same typos"
    )
    parser.add_argument(
        "--lm-texts", type=positive_int, default=200, help="texts the LM scores (default 200)"
    )
    parser.add_argument(
        "--max-drop", type=fraction, default=0.10, help="fail when noise costs more accuracy than this (0.10)"
    )
    parser.add_argument(
        "--max-success-rate", type=fraction, default=0.5, help="fail when an attack succeeds more often (0.5)"
    )
    parser.add_argument(
        "--adversarial-training",
        metavar="DIR",
        help="also train a clean and a noise-augmented classifier into DIR (base model and options "
        "from the run) and compare them on a held-out split",
    )
    parser.add_argument(
        "--train-data", metavar="FILE", help="labelled file for --adversarial-training (default: the run's)"
    )
    parser.add_argument(
        "--adv-rate", type=fraction, default=0.1, help="edits per character of the copies (0.1)"
    )
    parser.add_argument(
        "--adv-copies", type=positive_int, default=1, help="perturbed copies per training text (1)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, help="epochs for --adversarial-training (default: the run's)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument(
        "--seed", type=seed_type, default=0, help="seed of the perturbations and the bootstrap (0)"
    )
    parser.add_argument("--out", metavar="DIR", help="write robustness.json and the plot into DIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_overwrite(parser, "DIR/robustness.json")


def _adversarial(args) -> dict:
    """Rebuild the run's fine-tuning options and run adversarial_training with them."""
    from pathlib import Path

    from gptlab.audit.robustness import adversarial_training
    from gptlab.errors import GptlabError
    from gptlab.finetune.classify import ClassifyOptions
    from gptlab.finetune.common import LoraOptions
    from gptlab.io import read_json

    results = Path(args.model) / "results.json"
    if not results.is_file():
        raise GptlabError(
            f"{results} not found: --adversarial-training needs a run made by gptlab finetune classify"
        )
    saved = dict(read_json(results, "results file").get("options") or {})
    if not saved.get("model"):
        raise GptlabError(f"{results} does not record the run's options; retrain it with this gptlab")
    lora = saved.pop("lora", None) or {}
    saved["lora"] = LoraOptions(**{k: tuple(v) if k == "targets" else v for k, v in lora.items()})
    saved["prompting_shots"] = ()
    saved["progress"] = False
    saved["device"] = args.device
    known = set(ClassifyOptions.__dataclass_fields__)
    options = ClassifyOptions(**{k: v for k, v in saved.items() if k in known})
    options.out = args.adversarial_training
    if args.train_data:
        options.data, options.text_column, options.label_column = (
            args.train_data,
            args.text_column,
            args.label_column,
        )
    if args.epochs:
        options.epochs = args.epochs
    return adversarial_training(
        options, args.kinds, rate=args.adv_rate, copies=args.adv_copies, attack_rates=[max(args.rates)]
    )


def compute(args: argparse.Namespace):
    """The audit's AuditResult for parsed arguments (``run`` prints and saves it)."""
    from gptlab.audit.robustness import audit_robustness, read_labelled, read_test_split
    from gptlab.finetune.classifier_run import load_classifier

    clf = load_classifier(args.model, device=args.device)
    if args.data:
        texts, labels = read_labelled(args.data, clf.label_names, args.text_column, args.label_column)
    else:
        texts, labels = read_test_split(args.model, clf.label_names)
    adversarial = _adversarial(args) if args.adversarial_training else None
    result = audit_robustness(
        clf,
        texts,
        labels,
        kinds=args.kinds,
        rates=args.rates,
        seed=args.seed,
        max_texts=args.max_texts,
        greedy_edits=args.greedy_edits,
        greedy_candidates=args.greedy_candidates,
        greedy_texts=args.greedy_texts,
        hotflip_budget=args.hotflip_budget,
        hotflip_candidates=args.hotflip_candidates,
        hotflip_texts=args.hotflip_texts,
        lm=args.lm,
        lm_texts=args.lm_texts,
        max_drop=args.max_drop,
        max_success_rate=args.max_success_rate,
        adversarial=adversarial,
        device=args.device,
    )
    return result


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.audit import emit

    claim_views(args, ["robustness.json"])  # before the work, not after
    claim_training_folder(args, args.adversarial_training, "--adversarial-training folder")
    return emit(compute(args), args)
