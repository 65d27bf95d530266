"""``gptlab eval rag``: retrieval recall@k / MRR and answer match with vs without retrieval
(gptlab.rag.evaluate)."""

from __future__ import annotations

import argparse
import json
import sys


def register_rag(metrics) -> None:
    from gptlab.commands.rag import add_query_arguments

    parser = metrics.add_parser(
        "rag",
        help="retrieval recall@k and MRR, and answer match with vs without retrieval (Wilson intervals)",
        description="For each row of --data (JSONL: question, answers, optional gold doc id), retrieve the top "
        "--k chunks (relevant: from the gold doc, else containing an answer) and answer with and without them.",
    )
    add_query_arguments(parser)
    parser.add_argument(
        "--data", required=True, metavar="QA.jsonl", help='rows {"question", "answers", "doc"?}'
    )
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON (with per-question rows)"
    )
    parser.set_defaults(func=run_rag)


def run_rag(args: argparse.Namespace) -> int:
    from gptlab.commands.rag import load_query_side
    from gptlab.rag.evaluate import evaluate_rag, read_qa

    rows = read_qa(args.data)
    model, tokenizer, index, embedder = load_query_side(args)
    result = evaluate_rag(
        model,
        tokenizer,
        index,
        embedder,
        rows,
        args.k,
        args.mode,
        args.max_new_tokens,
        progress=lambda done, total: print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True),
    )
    print(file=sys.stderr)
    if args.json:
        print(json.dumps({"index": args.index, "model": args.model, "data": args.data} | result, indent=2))
        return 0
    print(f"{result['questions']} questions, top {args.k} by {args.mode} (relevant: {result['relevance']})")
    for name in ("recall_at_k", "answer_match_rag", "answer_match_closed_book"):
        r = result[name]
        print(
            f"{name:26} {r['value']:.3f}  [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  ({r['count']}/{r['n']})"
        )
    print(f"{'mrr':26} {result['mrr']:.3f}")
    paired = result["paired"]
    print(
        f"paired: both {paired['both']}, rag only {paired['rag_only']}, closed book only {paired['closed_only']}"
    )
    return 0
