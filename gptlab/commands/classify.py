"""``gptlab classify --model RUN "text" ...``: label texts with a fine-tuned classifier run."""

from __future__ import annotations

import argparse
import json
import sys

from gptlab.errors import GptlabError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="label texts with a classifier from `gptlab finetune classify`",
        description="Print each text's predicted label and its probability (texts as arguments, or "
        "one per line on stdin with --stdin).",
    )
    parser.add_argument("--model", required=True, metavar="RUN", help="a classifier run directory")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    parser.add_argument("--stdin", action="store_true", help="read texts from stdin, one per line")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print a JSON list with all class probabilities")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.finetune.classifier_run import load_classifier

    texts = list(args.texts)
    if args.stdin:
        texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise GptlabError('no texts to classify: give them as arguments ("text" ...) or use --stdin')
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise GptlabError(f"text number {empty[0] + 1} is empty")
    classifier = load_classifier(args.model, device=args.device)
    results = classifier.classify(texts)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    for r in results:
        print(f"{r['label']}\t{r['probability']:.4f}\t{r['text']}")
    return 0
