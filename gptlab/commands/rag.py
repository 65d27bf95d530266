"""``gptlab rag index|ask``: build a retrieval index over documents, and answer questions from it
with a model (retrieval-augmented generation). The library: gptlab/rag/."""

from __future__ import annotations

import argparse
import json
import sys

from gptlab.commands import add_overwrite, nonnegative_int, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rag",
        help="retrieval-augmented generation: index documents, answer questions with cited sources",
        description="Index documents (BM25 + dense embeddings, fused by reciprocal rank) and answer questions "
        "with a model that reads the retrieved chunks.",
    )
    verbs = parser.add_subparsers(dest="rag_verb", metavar="VERB", required=True)

    index = verbs.add_parser(
        "index",
        help="chunk, embed and BM25-index documents into an index folder",
        description="Read --docs (a text file, a .jsonl file of {id, text} rows, or a folder of them; files are "
        "streamed, binary files skipped), cut them into chunks of --chunk-tokens words overlapping by --overlap, "
        "embed every chunk and build a BM25 index. Writes index.json, chunks.jsonl and index.safetensors.",
    )
    index.add_argument("--docs", required=True, metavar="DIR|FILE", help="the documents")
    index.add_argument("--out", required=True, metavar="INDEX", help="the index folder to write")
    index.add_argument(
        "--embedder",
        default="minilm",
        metavar="minilm|RUN",
        help="minilm (offline all-MiniLM-L6-v2, default) or a gptlab run (its mean-pooled hidden states)",
    )
    index.add_argument(
        "--chunk-tokens", type=positive_int, default=128, metavar="N", help="words per chunk (128)"
    )
    index.add_argument("--overlap", type=nonnegative_int, default=32, metavar="M", help="words shared (32)")
    index.add_argument("--device", default="cpu", help="device of a run embedder (cpu)")
    index.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_overwrite(index, "the index folder")
    index.set_defaults(func=run_index)

    ask = verbs.add_parser(
        "ask",
        help="retrieve chunks for a question and answer it with a model, citing them",
        description="Retrieve the top --k chunks, put them in the prompt as numbered sources before "
        "'Q: QUESTION A:', and generate greedily (up to --max-new-tokens, stopping at a newline).",
    )
    ask.add_argument("question", help="the question")
    add_query_arguments(ask)
    ask.add_argument(
        "--json", action="store_true", help="print the answer, prompt and chunks with scores as JSON"
    )
    ask.set_defaults(func=run_ask)


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `rag ask` and `eval rag` share."""
    parser.add_argument(
        "--index", required=True, metavar="INDEX", help="an index folder from `gptlab rag index`"
    )
    parser.add_argument("--model", required=True, metavar="RUN", help="the run that answers")
    parser.add_argument("--k", type=positive_int, default=4, help="chunks to retrieve (4)")
    parser.add_argument(
        "--mode", choices=("hybrid", "bm25", "dense"), default="hybrid", help="retrieval (hybrid)"
    )
    parser.add_argument(
        "--embedder",
        metavar="minilm|RUN",
        help="the query embedder; default: the index's own (minilm, or --model when the index was built with it)",
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=15, help="answer length cap (15)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (cpu)")


def load_query_side(args: argparse.Namespace):
    """(model, tokenizer, index, embedder) for `rag ask` and `eval rag`."""
    from gptlab.rag.dense import MINILM, MINILM_ID, make_embedder, run_embedder
    from gptlab.rag.index import load_index
    from gptlab.rundir import load_model

    index = load_index(args.index)
    model, tokenizer = load_model(args.model, device=args.device)
    embedder = None
    if args.mode != "bm25":
        if args.embedder:
            embedder = make_embedder(args.embedder, args.device)
        elif index.embedder == MINILM_ID:
            embedder = make_embedder(MINILM)
        else:  # a run embedder: the model itself, when it is the index's (check_embedder says if not)
            embedder = run_embedder(args.model, args.device, model, tokenizer)
        index.check_embedder(embedder)
    return model, tokenizer, index, embedder


def run_index(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gptlab.outputs import claim_folder
    from gptlab.rag.dense import make_embedder
    from gptlab.rag.index import build_index

    out = Path(args.out)
    # before any work: refuse a non-empty --out without --overwrite; with it, the old index is
    # only replaced once the new one is built (a failed build leaves it as it was)
    if not (args.overwrite and out.is_dir() and any(out.iterdir())):
        claim_folder(out, what="index folder", sources=[args.docs])
    embedder = make_embedder(args.embedder, args.device)
    index = build_index(
        args.docs,
        embedder,
        args.chunk_tokens,
        args.overlap,
        warn=lambda message: print(f"warning: {message}", file=sys.stderr),
    )
    claim_folder(out, what="index folder", overwrite=args.overwrite, sources=[args.docs])
    index.save(out)
    summary = {
        "index": str(out),
        "chunks": len(index.chunks),
        "documents": len({c.doc for c in index.chunks}),
        "embedder": index.embedder,
        "dim": index.dim,
        "chunk_tokens": index.chunk_tokens,
        "overlap": index.overlap,
        "vocab": len(index.bm25.vocab),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{out}: {summary['chunks']} chunks from {summary['documents']} documents, "
            f"embedder {summary['embedder']} ({summary['dim']} wide), BM25 vocabulary {summary['vocab']}"
        )
    return 0


def run_ask(args: argparse.Namespace) -> int:
    from gptlab.rag.ask import answer

    model, tokenizer, index, embedder = load_query_side(args)
    result = answer(model, tokenizer, index, embedder, args.question, args.k, args.mode, args.max_new_tokens)
    if args.json:
        print(
            json.dumps(
                result.to_dict() | {"index": args.index, "model": args.model, "mode": args.mode}, indent=2
            )
        )
        return 0
    print(result.answer)
    print()
    for i, hit in enumerate(result.hits, 1):
        used = "" if i <= result.sources_used else " (did not fit the context)"
        print(f"[{i}] {hit.chunk.doc} @ word {hit.chunk.start}  score {hit.score:.4f}{used}")
        print(f"    {hit.chunk.text[:160]}")
    return 0
