"""``gptlab schedule plot``: the learning-rate curve a config will train with (gptlab.train.schedule)."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite
from gptlab.commands.train import add_overrides_argument


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "schedule",
        help="draw the learning-rate schedule of a training config",
        description="Learning-rate schedules (optim.schedule, optim.warmup_steps, optim.warmup_shape, ...).",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    plot = sub.add_parser(
        "plot",
        help="the lr of every step of a config's run, as a PNG and/or JSON",
        description="Compute the learning rate of every step of the run that --config (plus overrides) "
        "describes, and draw it (--out) or print it (--json).",
    )
    add_overrides_argument(plot, help="config overrides, e.g. optim.schedule=wsd optim.warmup_steps=50")
    plot.add_argument("--config", metavar="FILE|NAME", help="a TOML file or the name of a shipped config")
    plot.add_argument("--out", metavar="PNG", help="write the plot here (default lr.png unless --json)")
    plot.add_argument("--steps", type=int, metavar="N", help="steps to show (default train.max_steps)")
    add_overwrite(plot, "the --out file")
    plot.add_argument("--json", action="store_true", help="print {step: lr} values as one JSON document")
    plot.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.config import load_config
    from gptlab.errors import GptlabError
    from gptlab.io import atomic_write_bytes
    from gptlab.outputs import claim_file
    from gptlab.train.schedule import plot_schedule, schedule_from_config

    config = load_config(args.config, args.overrides)
    schedule = schedule_from_config(config)
    steps = args.steps if args.steps is not None else config.train.max_steps
    if steps < 1:
        raise GptlabError(f"--steps must be at least 1, got {steps}")
    out = args.out or (None if args.json else "lr.png")
    if out:
        claim_file(out, what="plot", overwrite=args.overwrite)
        atomic_write_bytes(out, plot_schedule(schedule, steps))
    if args.json:
        print(
            json.dumps(
                {"schedule": config.optim.schedule, "steps": steps, "plot": out, "lr": schedule.curve(steps)}
            )
        )
    else:
        print(f"{config.optim.schedule} schedule over {steps} steps: {out}")
    return 0
