"""``gptlab finetune classify|instruct``: adapt a pretrained model to a task (thin wrappers over
gptlab.finetune.classify and gptlab.finetune.instruct). Each task's flags are built from its
options dataclass (`ClassifyOptions`, `InstructOptions`, with `LoraOptions` inside): their field
defaults and help are the flags' defaults and help."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite
from gptlab.commands.options import add_dataclass_arguments, dataclass_from_args
from gptlab.options import column

# fields that get no flag: the warmup share is fixed at its default on the command line
NOT_FLAGS = ("warmup_fraction",)


def add_task_arguments(parser: argparse.ArgumentParser, options_class: type, **types) -> None:
    """The task's flags from ``options_class``, then --overwrite and --json (the CLI's own)."""
    add_dataclass_arguments(parser, options_class, exclude=NOT_FLAGS, types=types)
    add_overwrite(parser, "DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def task_options(options_class: type, args: argparse.Namespace):
    """The options the flags were parsed into; no progress bar when printing JSON."""
    return dataclass_from_args(options_class, args, progress=args.progress and not args.json)


def claim_output(args: argparse.Namespace) -> None:
    """The new run directory: empty (or --overwrite), writable, and not the base run or the data."""
    from gptlab.outputs import claim_folder

    claim_folder(
        args.out,
        what="run directory",
        overwrite=args.overwrite,
        sources=[args.model, getattr(args, "after", None), args.data],
    )


def register_preference(tasks) -> None:
    """`finetune dpo` and `finetune reward` (gptlab.finetune.dpo, gptlab.finetune.reward)."""
    from gptlab.finetune.dpo import DpoOptions
    from gptlab.finetune.reward import RewardOptions

    dpo = tasks.add_parser(
        "dpo",
        help="preference tuning (DPO, IPO, conservative DPO) on prompt/chosen/rejected pairs",
        description=(
            "Train a model (usually an instruct run) on preference pairs against a frozen copy of itself: "
            "DPO, IPO or cDPO. Prompts use the run's template. Writes the best-val checkpoint, metrics.jsonl "
            "(loss, reward margin, accuracy, KL to the reference per epoch) and results.json."
        ),
    )
    add_task_arguments(dpo, DpoOptions)
    dpo.set_defaults(func=lambda args: run_preference(args, "dpo"))
    reward = tasks.add_parser(
        "reward",
        help="train a Bradley-Terry reward model (scalar head on the last token) on preference pairs",
        description=(
            "Put a scalar head on the last token of prompt + response and train it so chosen responses score "
            "above rejected ones. The run scores responses for `gptlab generate --best-of N --reward RUN`."
        ),
    )
    add_task_arguments(reward, RewardOptions)
    reward.set_defaults(func=lambda args: run_preference(args, "reward"))


def register(subparsers) -> None:
    from gptlab.finetune.classify import ClassifyOptions
    from gptlab.finetune.instruct import InstructOptions

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
    add_task_arguments(clf, ClassifyOptions, text_column=column, label_column=column)
    clf.set_defaults(func=run_classify)

    instruct = tasks.add_parser(
        "instruct",
        help="instruction fine-tuning on Alpaca-format JSON/JSONL (instruction, input, output)",
        description=(
            "Train a pretrained GPT to follow instructions: prompt + response + <|endoftext|> with the Alpaca "
            "or chat template. Then generate responses for the test split (responses.json), score them with "
            "ROUGE-L, BLEU and exact match against the references, next to the base model's responses."
        ),
    )
    add_task_arguments(instruct, InstructOptions)
    instruct.set_defaults(func=run_instruct)
    register_preference(tasks)


def run_classify(args: argparse.Namespace) -> int:
    from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
    from gptlab.finetune.report import forgetting_perplexities

    claim_output(args)
    options = task_options(ClassifyOptions, args)

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
    perplexities = forgetting_perplexities(s)
    if perplexities:
        print(
            f"pretraining val perplexity: {perplexities[0]:.2f} before, {perplexities[1]:.2f} after fine-tuning"
        )
    if s.get("privacy"):
        from gptlab.train.dp import format_privacy

        print(format_privacy(s["privacy"]))
    print(f"report: {result.out_dir / 'report.html'}")
    return 0


def run_instruct(args: argparse.Namespace) -> int:
    from gptlab.finetune.instruct import InstructOptions, finetune_instruct
    from gptlab.finetune.report import forgetting_perplexities

    claim_output(args)
    options = task_options(InstructOptions, args)

    def on_epoch(r: dict) -> None:
        if not args.json:
            print(
                f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} | val loss {r['val_loss']:.4f}"
                + ("  (best)" if r.get("best") else ""),
                flush=True,
            )

    result = finetune_instruct(options, on_epoch=on_epoch)
    if args.json:
        print(json.dumps(result.summary, indent=2))
        return 0
    base = result.base_scores or {}
    print(f"\ntest responses ({result.scores['n']}): {result.out_dir / 'responses.json'}")
    print(f"{'metric':<18} {'base':>10} {'fine-tuned':>10}")
    for key in ("rougeL_f", "bleu", "chrf", "exact_match", "distinct_2", "mean_words"):
        b = base.get(key)
        print(f"{key:<18} {'' if b is None else f'{b:10.4f}':>10} {result.scores[key]:10.4f}")
    perplexities = forgetting_perplexities(result.summary)
    if perplexities:
        print(f"pretraining val perplexity: {perplexities[0]:.2f} before, {perplexities[1]:.2f} after")
    print(f"report: {result.out_dir / 'report.html'}")
    return 0


def run_preference(args: argparse.Namespace, task: str) -> int:
    if task == "dpo":
        from gptlab.finetune.dpo import DpoOptions as options_class
        from gptlab.finetune.dpo import finetune_dpo as train
    else:
        from gptlab.finetune.reward import RewardOptions as options_class
        from gptlab.finetune.reward import finetune_reward as train

    claim_output(args)
    options = task_options(options_class, args)

    def on_epoch(r: dict) -> None:
        if not args.json:
            shown = " | ".join(f"{k} {v:.4f}" for k, v in r.items() if k.startswith(("train_", "val_")))
            print(f"epoch {r['epoch']}: {shown}" + ("  (best)" if r.get("best") else ""), flush=True)

    result = train(options, on_epoch=on_epoch)
    if args.json:
        print(json.dumps(result.summary, indent=2))
    else:
        print(f"run: {result.out_dir} (best epoch {result.summary['best_epoch']})")
    return 0
