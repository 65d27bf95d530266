"""``gptlab quantize --model RUN --bits 8|4 --out RUN_Q``: weight-only int8 / int4 quantisation."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from gptlab.model.quantize import DEFAULT_GROUP_SIZE, GROUP_SIZES

    p = subparsers.add_parser(
        "quantize",
        help="weight-only int8 / int4 quantisation of a run (smaller, faster decoding)",
        description=(
            "Write a copy of a run with its weights in int8 (one scale per output channel) or int4 (a "
            "scale and minimum per group of inputs). The result loads like any run: gptlab generate, "
            "chat and eval perplexity take it as --model. Prints the sizes on disk and, with "
            "--eval-file, the perplexity of both models on that text."
        ),
    )
    p.add_argument("--model", required=True, metavar="RUN", help="run directory (float weights)")
    p.add_argument("--bits", type=int, required=True, choices=[8, 4], help="8 or 4")
    p.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_GROUP_SIZE,
        help=f"int4: inputs per scale, one of {', '.join(map(str, GROUP_SIZES))} (default {DEFAULT_GROUP_SIZE})",
    )
    p.add_argument("--out", required=True, metavar="RUN_Q", help="new run directory to write")
    p.add_argument("--eval-file", metavar="FILE", help="UTF-8 text: report perplexity before and after")
    p.add_argument(
        "--eval-max-chars", type=positive_int, help="score only the first N characters of --eval-file"
    )
    add_overwrite(p, "RUN_Q")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} MB"


def run(args: argparse.Namespace) -> int:
    from gptlab.convert import quantize_run
    from gptlab.run import Run

    Run.create(args.out, what="run directory", overwrite=args.overwrite, sources=[args.model, args.eval_file])
    r = quantize_run(args.model, args.out, args.bits, args.group_size, args.eval_file, args.eval_max_chars)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    group = f", group size {r['group_size']}" if r["bits"] == 4 else ""
    print(f"quantised {r['model']} -> {r['out']} ({r['scheme']}{group})")
    print(f"size on disk   {_mb(r['run_bytes_before'])} -> {_mb(r['run_bytes_after'])}")
    if "perplexity_fp32" in r:
        print(
            f"perplexity     {r['perplexity_fp32']:.4f} -> {r['perplexity_quantized']:.4f} "
            f"({r['perplexity_change_percent']:+.2f}%) on {r['eval_file']}"
        )
    return 0
