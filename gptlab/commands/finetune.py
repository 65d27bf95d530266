"""``gptlab finetune classify|instruct``: adapt a pretrained model to a task (thin wrappers over
gptlab.finetune.classify and gptlab.finetune.instruct)."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import (
    add_overwrite,
    nonnegative_float,
    nonnegative_int,
    open_unit_interval,
    positive_float,
    positive_int,
    seed_type,
)
from gptlab.options import column


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    from gptlab.model.lora import DEFAULT_TARGETS

    group = parser.add_argument_group("LoRA (gptlab.model.lora)")
    group.add_argument(
        "--lora-rank",
        type=nonnegative_int,
        default=0,
        metavar="R",
        help="train rank-R adapters instead of the weights (0: off)",
    )
    group.add_argument(
        "--lora-alpha", type=positive_float, default=16.0, help="LoRA scaling numerator (update * alpha/r)"
    )
    group.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on the LoRA branch input")
    group.add_argument(
        "--lora-targets",
        nargs="+",
        default=list(DEFAULT_TARGETS),
        metavar="MODULE",
        help="module-name suffixes to adapt (default: every Linear of each block)",
    )


def add_dp_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("differential privacy (DP-SGD, gptlab.train.dp)")
    group.add_argument(
        "--dp-epsilon",
        type=positive_float,
        metavar="EPS",
        help="train with DP-SGD, noise calibrated to spend this epsilon over the run (default: off)",
    )
    group.add_argument(
        "--dp-delta",
        type=open_unit_interval,
        metavar="DELTA",
        help="DP delta (default: the largest power of 10 below 1/N)",
    )
    group.add_argument(
        "--dp-max-grad-norm",
        type=positive_float,
        default=1.0,
        metavar="C",
        help="per-example gradient clip (DP-SGD)",
    )


def lora_options(args: argparse.Namespace):
    from gptlab.finetune.common import LoraOptions

    return LoraOptions(args.lora_rank, args.lora_alpha, args.lora_dropout, tuple(args.lora_targets))


def add_common_training(parser: argparse.ArgumentParser, epochs: int, batch_size: int, lr: float) -> None:
    parser.add_argument(
        "--model", required=True, metavar="RUN", help="base model: a gptlab run or HF GPT-2 folder"
    )
    parser.add_argument("--data", required=True, metavar="FILE", help="the task's data file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output run directory")
    add_overwrite(parser, "DIR")
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--batch-size", type=positive_int, default=batch_size)
    parser.add_argument(
        "--lr", type=positive_float, default=lr, help="peak learning rate (warmup, then cosine to lr/10)"
    )
    parser.add_argument("--weight-decay", type=nonnegative_float, default=0.01)
    parser.add_argument("--grad-clip", type=nonnegative_float, default=1.0, help="max gradient norm (0: off)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=seed_type, default=0)
    parser.add_argument("--max-minutes", type=positive_float, help="stop training after this many minutes")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, mps (default: cuda if available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def claim_output(args: argparse.Namespace) -> None:
    """The new run directory: empty (or --overwrite), writable, and not the base run or the data."""
    from gptlab.outputs import claim_folder

    claim_folder(args.out, what="run directory", overwrite=args.overwrite, sources=[args.model, args.data])


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained model: classification or instruction following",
        description="Fine-tune a pretrained gptlab model (or converted GPT-2) on a task; full, partial or LoRA.",
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)

    clf = tasks.add_parser(
        "classify",
        help="train a text classifier (e.g. spam) on a labelled TSV/CSV/JSONL/JSON file",
        description=(
            "Put a classification head on the last real token (or the mean) of a pretrained GPT and train it "
            "on a labelled file, split stratified into train/val/test. Writes the best-val checkpoint, "
            "metrics.jsonl, metrics.png, results.json (test metrics, prompting baseline, forgetting, costs) "
            "and report.html."
        ),
    )
    add_common_training(clf, epochs=3, batch_size=16, lr=3e-4)
    clf.add_argument("--text-column", type=column, default="text", help="name or 0-based position")
    clf.add_argument("--label-column", type=column, default="label", help="name or 0-based position")
    clf.add_argument("--labels", nargs="+", help="label names in order (others are an error)")
    header = clf.add_mutually_exclusive_group()
    header.add_argument(
        "--header", dest="header", action="store_true", default=None, help="first row names columns"
    )
    header.add_argument("--no-header", dest="header", action="store_false", help="no header row (TSV/CSV)")
    clf.add_argument("--balance", choices=("none", "undersample", "oversample"), default="none")
    clf.add_argument("--class-weights", action="store_true", help="weigh the loss by inverse class frequency")
    clf.add_argument("--max-length", type=positive_int, help="tokens per text (default: the model's context)")
    clf.add_argument("--pooling", choices=("last", "mean"), default="last")
    clf.add_argument(
        "--trainable",
        default="all",
        metavar="WHAT",
        help="head | last:N (last N blocks + final norm + head) | all",
    )
    clf.add_argument(
        "--prompting-shots",
        type=int,
        nargs="*",
        default=[0, 4],
        metavar="K",
        help="prompting baselines to report (k-shot, label words = label names); none to skip",
    )
    add_lora_arguments(clf)
    add_dp_arguments(clf)
    clf.set_defaults(func=run_classify)

    from gptlab.commands.finetune_instruct import register_instruct

    register_instruct(tasks)


def run_classify(args: argparse.Namespace) -> int:
    from gptlab.finetune.classify import ClassifyOptions, finetune_classifier

    claim_output(args)
    options = ClassifyOptions(
        model=args.model,
        data=args.data,
        out=args.out,
        text_column=args.text_column,
        label_column=args.label_column,
        labels=args.labels,
        header=args.header,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        balance=args.balance,
        class_weights=args.class_weights,
        max_length=args.max_length,
        pooling=args.pooling,
        trainable=args.trainable,
        lora=lora_options(args),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        max_minutes=args.max_minutes,
        device=args.device,
        prompting_shots=tuple(args.prompting_shots),
        progress=not args.no_progress and not args.json,
        dp_epsilon=args.dp_epsilon,
        dp_delta=args.dp_delta,
        dp_max_grad_norm=args.dp_max_grad_norm,
    )

    def on_epoch(r: dict) -> None:
        if not args.json:
            t, v = r["train"], r["val"]
            print(
                f"epoch {r['epoch']}: train loss {t['loss']:.4f} acc {t['accuracy']:.4f} | "
                f"val loss {v['loss']:.4f} acc {v['accuracy']:.4f} macro-F1 {v['macro_f1']:.4f}"
                + ("  (best)" if r.get("best") else ""),
                flush=True,
            )

    result = finetune_classifier(options, on_epoch=on_epoch)
    s = result.summary
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    c = s["costs"]
    print(f"\ntest set (best epoch {result.best_epoch}):\n{result.test.format()}\n")
    print(
        f"trainable params {c['trainable_params']:,} of {c['total_params']:,} ({c['trainable_percent']:.2f}%)"
    )
    for name, r in s.get("prompting", {}).items():
        if r["accuracy"] is None:
            print(f"prompting baseline {name}: not run ({r['error']})")
        else:
            print(f"prompting baseline {name}: accuracy {r['accuracy']:.4f} on {r['examples']} test texts")
    f = s.get("forgetting") or {}
    if f.get("before") and f.get("after"):
        print(
            f"pretraining val perplexity: {f['before']['perplexity']:.2f} before, "
            f"{f['after']['perplexity']:.2f} after fine-tuning"
        )
    if s.get("privacy"):
        from gptlab.train.dp import format_privacy

        print(format_privacy(s["privacy"]))
    print(f"report: {result.out_dir / 'report.html'}")
    return 0
