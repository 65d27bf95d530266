"""``gptlab fill --model RUN "The capital of France is [MASK]."``: top-k fills of an encoder (gptlab.fill)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fill",
        help="fill the [MASK] tokens of a text with an encoder (model.arch=encoder)",
        description="Print the top-k tokens (and probabilities) at each [MASK] of the text, by an "
        "encoder run pretrained with train.objective=mlm.",
    )
    parser.add_argument("--model", required=True, metavar="RUN", help="an encoder run directory")
    parser.add_argument("text", metavar="TEXT", help='text with one or more "[MASK]"')
    parser.add_argument("--top-k", type=int, default=5, help="fills shown per mask (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print the fills as one JSON list")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.fill import fill_mask
    from gptlab.run import Run

    model, tokenizer = Run.open(args.model).load(device=args.device)
    results = fill_mask(model, tokenizer, args.text, k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    for r in results:
        shown = "  ".join(f"{f['token']!r} {f['probability']:.3f}" for f in r["fills"])
        print(f"[MASK] at token {r['position']}: {shown}")
    print(results[-1]["filled"])
    return 0
