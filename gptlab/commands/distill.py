"""``gptlab distill``: train a student GPT on a teacher run's softened distributions (gptlab.train.distill)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gptlab.errors import GptlabError


def register(subparsers) -> None:
    from gptlab.commands import add_overwrite, fraction, nonnegative_int, positive_float
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
    p.add_argument(
        "--resume", action="store_true", help="continue the student run in --out from its checkpoint"
    )
    add_overwrite(p, "the student's run directory")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.train import format_result
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
