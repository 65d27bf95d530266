"""``gptlab distill``: train a student GPT on a teacher run's softened distributions (gptlab.train.distill)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gptlab.errors import GptlabError


def register(subparsers) -> None:
    from gptlab.commands import add_overwrite, fraction, nonnegative_int, positive_float, positive_int
    from gptlab.commands.train import add_overrides_argument

    p = subparsers.add_parser(
        "distill",
        help="knowledge distillation: train a student GPT on a teacher run's softened distribution",
        description=(
            "Train the student described by --student-config (a TOML file or shipped name, then KEY=VALUE "
            "overrides) into --out, with the loss alpha * CE(data) + (1 - alpha) * T^2 * "
            "KL(teacher_T || student_T). alpha=1 is ordinary training. The student's data must use the "
            "teacher's tokenizer; without data in the config the teacher's own prepared data is used. "
            "Example: gptlab distill --teacher runs/big --student-config shakespeare-char model.n_layer=2 "
            "--temperature 2 --alpha 0.5 --out runs/student"
        ),
    )
    add_overrides_argument(p, help="student config overrides, e.g. model.n_layer=2 train.max_steps=500")
    p.add_argument("--teacher", required=True, metavar="RUN", help="the teacher: a gptlab language-model run")
    p.add_argument("--student-config", metavar="FILE|NAME", help="the student's training config")
    p.add_argument("--out", metavar="RUN", help="the student's run directory (same as train.out_dir=RUN)")
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=2.0,
        metavar="T",
        help="softening temperature (default 2)",
    )
    p.add_argument(
        "--alpha",
        type=fraction,
        default=0.5,
        metavar="A",
        help="weight of the hard-label loss; 1 - A weighs the KL term (default 0.5; 1 = ordinary training)",
    )
    p.add_argument(
        "--top-k",
        type=nonnegative_int,
        default=0,
        metavar="K",
        help="precompute the teacher's top-K logits once (RUN/teacher_topk) instead of running it per batch",
    )
    g = p.add_argument_group(
        "a classifier teacher (all fine-tuning options: gptlab finetune classify --teacher RUN ...)"
    )
    g.add_argument(
        "--student-base",
        metavar="RUN",
        help="the (smaller) language model the student classifier starts from",
    )
    g.add_argument(
        "--data", metavar="FILE", help="the labelled file (the teacher's columns and labels are used)"
    )
    g.add_argument("--epochs", type=positive_int, default=3, help="fine-tuning epochs (default 3)")
    p.add_argument(
        "--resume", action="store_true", help="continue the student run in --out from its checkpoint"
    )
    add_overwrite(p, "the student's run directory")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    p.set_defaults(func=run)


def run_classifier(args: argparse.Namespace, teacher) -> int:
    from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
    from gptlab.run import Run

    if not args.student_base or not args.data or not args.out:
        raise GptlabError(
            f"{args.teacher} is a classifier: give --student-base RUN, --data FILE and --out RUN"
        )
    if args.student_config or args.overrides or args.top_k or args.resume:
        raise GptlabError(
            "a classifier student takes --student-base, --data, --epochs (not a config, --top-k or --resume)"
        )
    columns = teacher.classifier_meta.get("columns", {})
    options = ClassifyOptions(
        model=args.student_base,
        data=args.data,
        out=args.out,
        text_column=columns.get("text", "text"),
        label_column=columns.get("label", "label"),
        header=columns.get("header"),
        labels=list(teacher.classifier_meta["label_names"]),
        epochs=args.epochs,
        prompting_shots=(),
        progress=not args.json,
        teacher=args.teacher,
        distill_temperature=args.temperature,
        distill_alpha=args.alpha,
    )
    options.check()
    Run.create(
        args.out, what="classifier run", overwrite=args.overwrite, sources=[args.teacher, args.student_base]
    )
    result = finetune_classifier(options)
    test = result.test.to_dict()
    if args.json:
        print(
            json.dumps(
                {"out_dir": str(result.out_dir), "best_epoch": result.best_epoch, "test": test}, indent=2
            )
        )
    else:
        print(f"{result.out_dir}: test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}")
    return 0


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.train import format_result
    from gptlab.run import Run

    teacher = Run.open(args.teacher)
    if teacher.kind == "classifier":
        return run_classifier(args, teacher)
    if args.student_base or args.data:
        raise GptlabError(
            "--student-base and --data are for a classifier teacher; a language-model student takes --student-config"
        )
    from gptlab.config import load_config
    from gptlab.train import signals
    from gptlab.train.distill import DistillOptions, distill

    overrides = list(args.overrides)
    if args.resume:
        if not args.out:
            raise GptlabError("--resume needs --out RUN (the student run to continue)")
        if args.student_config:
            raise GptlabError("--resume reads RUN/config.toml: do not give --student-config too")
        config = load_config(str(Path(args.out) / "config.toml"), overrides + [f'train.out_dir="{args.out}"'])
    else:
        if args.out:
            overrides.append(f'train.out_dir="{args.out}"')
        config = load_config(args.student_config, overrides)
    if args.json:
        config.train.progress = False
    options = DistillOptions(temperature=args.temperature, alpha=args.alpha, top_k=args.top_k)
    options.check()
    if args.overwrite:
        if args.resume:
            raise GptlabError("--overwrite starts the run over, --resume continues it: give one")
        from gptlab.outputs import claim_folder

        claim_folder(config.train.out_dir, what="run directory", overwrite=True, sources=[args.teacher])
    try:
        result = distill(args.teacher, config, options, resume=args.resume)
    except signals.Terminated:
        print("terminated", file=sys.stderr)
        return signals.SIGTERM_EXIT
    if args.json:
        print(
            json.dumps(
                {**result.to_dict(), "distill": {"teacher": args.teacher, **options.__dict__}}, indent=2
            )
        )
    else:
        print(format_result(result))
    return signals.exit_code(result.stop_reason)
