"""``gptlab train``: pretrain a GPT from a TOML config and key=value overrides (gptlab.train)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gptlab.errors import GptlabError


def register(subparsers) -> None:
    from gptlab.config import list_presets

    p = subparsers.add_parser(
        "train",
        help="pretrain a GPT from a TOML config and key=value overrides",
        description=(
            "Train a GPT and write a run directory (config.toml, model files, checkpoints, metrics.jsonl, "
            "loss.png, samples.txt, report.html). Settings: the defaults, then --config, then "
            "section.key=value overrides, e.g. train.max_steps=500 model.n_layer=6 "
            'data.input=["notes.txt"]. Sections: model, data, optim, train. '
            f"Shipped configs: {', '.join(list_presets())}. Several processes: torchrun "
            "--nproc_per_node=N -m gptlab train ... (see docs/scaling.md)."
        ),
    )
    add_overrides_argument(p, help="config overrides, e.g. train.max_steps=500 (anywhere among the options)")
    p.add_argument("--config", metavar="FILE|NAME", help="a TOML file or the name of a shipped config")
    p.add_argument("--out", metavar="RUN", help="run directory (same as train.out_dir=RUN)")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in RUN from its last checkpoint (its config.toml, plus any overrides)",
    )
    p.add_argument("--max-minutes", type=float, help="wall-time budget (same as train.max_minutes=N)")
    p.add_argument(
        "--strategy",
        choices=["auto", "ddp", "fsdp"],
        help="under torchrun: ddp (auto) replicates the model, fsdp shards it (same as train.strategy=S)",
    )
    p.add_argument(
        "--dp-epsilon",
        type=float,
        metavar="EPS",
        help="DP-SGD, noise calibrated to spend EPS over train.max_steps (same as dp.epsilon=EPS)",
    )
    p.add_argument("--dp-delta", type=float, metavar="DELTA", help="DP delta (same as dp.delta=DELTA)")
    p.add_argument(
        "--dp-max-grad-norm", type=float, metavar="C", help="per-window gradient clip (dp.max_grad_norm=C)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="empty the run directory first, even if it holds a run (without it: an error)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    p.set_defaults(func=run)


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """A ``KEY=VALUE ...`` positional that may be split by options: ``train a=1 --out R b=2``.

    argparse fills a positional from one run of plain words only, so words after an option would
    be "unrecognized arguments"; and its parse_intermixed_args refuses parsers with sub-commands,
    which every gptlab verb sits under. So this parser collects the KEY=VALUE words argparse left
    over (anything else left over stays an error)."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)
    parse_known_args = parser.parse_known_args

    def parse_with_late_overrides(args=None, namespace=None):
        namespace, extras = parse_known_args(args, namespace)
        late = [a for a in extras if _is_override(a)]
        namespace.overrides = list(namespace.overrides or []) + late
        return namespace, [a for a in extras if not _is_override(a)]

    parser.parse_known_args = parse_with_late_overrides  # what the verb's sub-parser action calls


def _is_override(word: str) -> bool:
    return "=" in word and not word.startswith("-")


def run(args: argparse.Namespace) -> int:
    from gptlab.config import load_config
    from gptlab.train import signals, train

    overrides = list(args.overrides)
    if args.resume:
        if args.config:
            raise GptlabError("--resume reads RUN/config.toml: do not give --config too")
        config_path = Path(args.resume) / "config.toml"
        if not config_path.is_file():
            raise GptlabError(f"cannot resume: {config_path} not found")
        config = load_config(str(config_path), overrides + [f'train.out_dir="{args.resume}"'])
    else:
        if args.out:
            overrides.append(f'train.out_dir="{args.out}"')
        config = load_config(args.config, overrides)
    if args.max_minutes is not None:
        config.train.max_minutes = args.max_minutes
    if args.strategy is not None:
        config.train.strategy = args.strategy
    for flag, key in (
        ("dp_epsilon", "epsilon"),
        ("dp_delta", "delta"),
        ("dp_max_grad_norm", "max_grad_norm"),
    ):
        if getattr(args, flag) is not None:
            setattr(config.dp, key, getattr(args, flag))
    if args.json:
        config.train.progress = False
    if args.overwrite:
        if args.resume:
            raise GptlabError("--overwrite starts the run over, --resume continues it: give one")
        if os.environ.get("RANK", "0") == "0":  # under torchrun, the main process empties it once
            from gptlab.outputs import claim_folder

            claim_folder(config.train.out_dir, what="run directory", overwrite=True)
    try:
        result = train(config, resume=bool(args.resume))
    except signals.Terminated:  # before the first step (preparing data, building the model)
        print("terminated", file=sys.stderr)
        return signals.SIGTERM_EXIT
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return signals.exit_code(result.stop_reason)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_result(result))
    return signals.exit_code(result.stop_reason)  # 130 after Ctrl-C, 143 after SIGTERM


def format_result(result) -> str:
    lines = [f"{result.run_dir}: {result.step} steps ({result.stop_reason}), {result.elapsed_s:.0f} s, "
             f"{result.tokens_per_s:,.0f} tokens/s, {result.n_params:,} parameters"]  # fmt: skip
    if result.final_val_loss is not None:
        lines.append(f"val loss {result.final_val_loss:.4f} (best {result.best_val_loss:.4f})")
    if result.unigram_val_loss is not None:
        lines.append(f"unigram baseline val loss {result.unigram_val_loss:.4f}")
    if getattr(result, "privacy", None):
        from gptlab.train.dp import format_privacy

        lines.append(format_privacy(result.privacy))
    lines.append(f"report: {result.run_dir / 'report.html'}")
    return "\n".join(lines)
