"""``gptlab eval METRIC``: evaluate a model or its outputs; one sub-verb per metric.

Each metric module adds its own sub-verbs to the ``eval`` parser: perplexity here, BLEU and ROUGE
in gptlab/commands/eval_text.py; a new metric adds one line to ``register``.
"""

from __future__ import annotations

import argparse
import json

from gptlab.commands import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model (perplexity, ...)",
        description=(
            "Evaluate a model on text (perplexity, bits per byte), score generated text (BLEU, ROUGE, LLM judge), or a classifier run (accuracy, F1, confusion)."
        ),
    )
    metrics = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)
    register_perplexity(metrics)

    from gptlab.commands.eval_text import register_text_metrics

    register_text_metrics(metrics)

    from gptlab.commands.eval_judge import register_judge

    register_judge(metrics)

    from gptlab.commands.eval_classify import register_classify

    register_classify(metrics)

    from gptlab.commands.eval_tasks import register_tasks

    register_tasks(metrics)

    from gptlab.commands.eval_generation import register_generation

    register_generation(metrics)

    from gptlab.commands.eval_baseline import register_baseline

    register_baseline(metrics)

    from gptlab.commands.eval_forgetting import register_forgetting

    register_forgetting(metrics)

    from gptlab.commands.eval_rag import register_rag

    register_rag(metrics)


def register_perplexity(metrics) -> None:
    ppl = metrics.add_parser(
        "perplexity",
        help="perplexity and bits per byte of a model on a text file (strided sliding window)",
        description=(
            "Score every token of a text file once with windows of the model's context that move by "
            "--stride tokens (each token sees at least block_size - stride tokens of context). Prints the "
            "perplexity and the bits per byte, which compares models with different tokenizers."
        ),
    )
    ppl.add_argument(
        "--model",
        required=True,
        metavar="RUN",
        help="a run directory (or anything gptlab's load_model reads)",
    )
    ppl.add_argument("--input", required=True, metavar="FILE", help="UTF-8 text file to score")
    ppl.add_argument(
        "--stride", type=positive_int, help="tokens between window starts (default: half the context)"
    )
    ppl.add_argument(
        "--block-size", type=positive_int, help="window length (default: the model's context length)"
    )
    ppl.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass")
    ppl.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    ppl.add_argument("--json", action="store_true", help="print machine-readable JSON")
    ppl.set_defaults(func=run_perplexity)


def run_perplexity(args: argparse.Namespace) -> int:
    from gptlab.data.corpus import read_text_file
    from gptlab.eval.perplexity import evaluate_text
    from gptlab.rundir import load_model

    text = read_text_file(args.input)
    model, tokenizer = load_model(args.model, device=args.device)
    result = evaluate_text(
        model, tokenizer, text, block_size=args.block_size, stride=args.stride, batch_size=args.batch_size
    )
    if args.json:
        print(json.dumps({"model": args.model, "input": args.input} | result.to_dict(), indent=2))
        return 0
    print(
        f"{args.input}: {result.tokens:,} tokens scored (window {result.block_size}, stride {result.stride})"
    )
    print(f"perplexity     {result.perplexity:.4f}")
    print(f"mean NLL       {result.mean_nll:.4f} nats/token")
    if result.bits_per_byte is not None:
        print(f"bits per byte  {result.bits_per_byte:.4f}")
    return 0
