"""``gptlab quickstart``: the whole pipeline in one command, offline, on the built-in corpus.

Trains a BPE tokenizer and a `tiny` GPT on the Python documentation bundled with the interpreter
(config ``tiny-cpu``), then prints samples, the val perplexity against the unigram baseline, and
the path of the report.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

from gptlab.commands import positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="train a tokenizer and a tiny GPT on the built-in corpus, then sample",
        description=(
            "Train a BPE tokenizer and a tiny GPT on the built-in corpus (the Python docs shipped with the "
            "interpreter; no download) with the tiny-cpu config, then print samples, val perplexity vs the "
            "unigram baseline, and the report path. A few minutes on 2 CPU cores."
        ),
    )
    p.add_argument(
        "--out", default="runs/quickstart", metavar="DIR", help="run directory (default: %(default)s)"
    )
    p.add_argument("--max-minutes", type=positive_float, help="wall-time budget (default: the config's)")
    p.add_argument("--max-steps", type=positive_int, help="optimizer steps (default: the config's)")
    p.add_argument("--fresh", action="store_true", help="delete DIR first if it holds an earlier run")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.config import load_config
    from gptlab.errors import GptlabError
    from gptlab.generate import Sampler, generate_text
    from gptlab.rundir import load_model
    from gptlab.train import signals, train
    from gptlab.train.checkpoint import foreign_entries, has_checkpoint

    out = Path(args.out)
    if foreign := foreign_entries(out):  # not a quickstart: --fresh must not delete it, nor train in it
        raise GptlabError(
            f"{out} already exists and holds files that are not a gptlab run "
            f"({', '.join(foreign[:5])}): choose another --out"
        )
    if args.fresh and out.is_dir():
        shutil.rmtree(out)
    overrides = [f'train.out_dir="{out}"']
    if args.max_minutes is not None:
        overrides.append(f"train.max_minutes={args.max_minutes}")
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    config = load_config("tiny-cpu", overrides)
    config.train.progress = not args.json
    resume = has_checkpoint(out)
    if resume and not args.json:
        print(f"{out} holds an earlier quickstart: continuing it (--fresh starts over)")
    try:
        result = train(config, resume=resume)
    except signals.Terminated:  # before the first step
        return signals.SIGTERM_EXIT
    if signals.exit_code(result.stop_reason):  # Ctrl-C or SIGTERM: the checkpoint is saved, stop here
        print(f"run `gptlab quickstart --out {out}` again to continue", file=sys.stderr)
        return signals.exit_code(result.stop_reason)
    model, tokenizer = load_model(out / "best" if (out / "best").is_dir() else out)
    samples = [
        generate_text(model, tokenizer, prompt, 60, Sampler(temperature=0.8, top_k=40), seed=i)
        for i, prompt in enumerate(["The", "A list", "Python"])
    ]
    summary = result.to_dict() | {
        "val_perplexity": None if result.final_val_loss is None else math.exp(result.final_val_loss),
        "unigram_perplexity": None if result.unigram_val_loss is None else math.exp(result.unigram_val_loss),
        "samples": samples,
        "report": str(out / "report.html"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\nsamples (best checkpoint, temperature 0.8, top-k 40):")
    for prompt, text in zip(["The", "A list", "Python"], samples):
        print(f"  > {prompt}{text}".replace("\n", " "))
    if result.final_val_loss is not None and result.unigram_val_loss is not None:
        print(
            f"\nval loss {result.final_val_loss:.3f} (perplexity {summary['val_perplexity']:.1f}) vs unigram "
            f"baseline {result.unigram_val_loss:.3f} (perplexity {summary['unigram_perplexity']:.1f})"
        )
    print(f"{result.step} steps in {result.elapsed_s:.0f} s, {result.tokens_per_s:,.0f} tokens/s")
    print(f"report: {out / 'report.html'}")
    return 0
