"""``gptlab analyze embeddings``: nearest tokens, sentence similarity beside a pretrained MiniLM,
a PCA map and DBSCAN clusters of token embeddings (gptlab/interpret/embeddings.py), as tables,
JSON, or with ``--out DIR`` an HTML page and a PNG.

``gptlab/commands/analyze.py`` adds ``--model RUN`` and ``--json`` to this view's parser; this
module adds the rest. Heavy imports (torch, matplotlib, transformers) happen inside ``run``, so
``gptlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.commands import add_overwrite, positive_float, positive_int

HELP = "nearest tokens, sentence similarity (beside a pretrained MiniLM), PCA and clusters of embeddings"
HTML_FILE = "embeddings.html"
PNG_FILE = "embeddings_pca.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token", default=" the", help="the token whose nearest neighbours to list (default: ' the')"
    )
    parser.add_argument(
        "--pairs",
        help="texts to compare, 'a|b;c|d' (default: dog|puppy, dog|car, king|queen, ... and sentence pairs)",
    )
    parser.add_argument(
        "--tokens",
        help="comma-separated words for the PCA map and the clusters (default: about 20 common English "
        "words); each is tried as ' word' then 'word', words that are not one token are reported",
    )
    parser.add_argument("--k", type=positive_int, default=10, help="nearest neighbours listed (default 10)")
    parser.add_argument(
        "--eps",
        type=positive_float,
        default=0.5,
        help="DBSCAN radius in cosine distance, 1 - cosine (default 0.5)",
    )
    parser.add_argument(
        "--min-samples",
        type=positive_int,
        default=2,
        help="DBSCAN: neighbours a core point needs, itself included (default 2)",
    )
    parser.add_argument(
        "--layer",
        type=int,
        default=-1,
        help="layer for sentence vectors: 0 = embeddings, -1 = last (default)",
    )
    parser.add_argument(
        "--no-minilm",
        action="store_true",
        help="leave out the pretrained MiniLM column (no extra packages needed)",
    )
    parser.add_argument("--out", metavar="DIR", help=f"write DIR/{HTML_FILE} and DIR/{PNG_FILE}")
    add_overwrite(parser, "those files")


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    """'a|b;c|d' -> [("a", "b"), ("c", "d")]; GptlabError for anything else."""
    from gptlab.errors import GptlabError

    pairs = []
    for item in spec.split(";"):
        if not item.strip():
            continue
        parts = [p.strip() for p in item.split("|")]
        if len(parts) != 2 or not all(parts):
            raise GptlabError(f"--pairs: each pair is two non-empty texts joined by '|', got {item!r}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise GptlabError(f"--pairs: no pairs in {spec!r}; write them as 'a|b;c|d'")
    return pairs


def run(args: argparse.Namespace) -> int:
    from gptlab.commands import claim_views
    from gptlab.errors import GptlabError
    from gptlab.interpret.embeddings import (
        DEFAULT_PAIRS,
        DEFAULT_TOKENS,
        ENCODER_TITLES,
        analyze_embeddings,
    )
    from gptlab.rundir import load_model

    pairs = parse_pairs(args.pairs) if args.pairs is not None else list(DEFAULT_PAIRS)
    if args.tokens is not None:
        tokens = [t.strip() for t in args.tokens.split(",") if t.strip()]
        if not tokens:
            raise GptlabError(f"--tokens: no words in {args.tokens!r}; give comma-separated words")
    else:
        tokens = list(DEFAULT_TOKENS)
    if args.k < 1:
        raise GptlabError(f"--k must be >= 1, got {args.k}")
    claim_views(args, [HTML_FILE, PNG_FILE])
    model, tokenizer = load_model(args.model)
    result = analyze_embeddings(
        model,
        tokenizer,
        token=args.token,
        pairs=pairs,
        tokens=tokens,
        k=args.k,
        eps=args.eps,
        min_samples=args.min_samples,
        minilm=not args.no_minilm,
        layer=args.layer,
    )
    written = write_page(result, args.out, args.model) if args.out else None
    if args.json:
        print(json.dumps(result if written is None else {**result, "html": str(written)}))
        return 0
    _print_tables(result, ENCODER_TITLES)
    if written is not None:
        print(f"wrote {written}")
    return 0


def write_page(result: dict, out_dir, model_name: str):
    """Write the HTML page and the PCA plot of ``result`` into ``out_dir``; return the page's path."""
    from gptlab.interpret.embeddings import plot_pca, render_embeddings_html
    from gptlab.io import atomic_write_bytes, atomic_write_text

    pca = result["pca"]
    png = plot_pca(
        pca["points"],
        pca["labels"],
        title=f"token embeddings of {model_name}",
        explained=pca["explained_variance_ratio"],
    )
    out = Path(out_dir)  # claimed by run() (claim_views)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / PNG_FILE, png)
    return atomic_write_text(
        out / HTML_FILE, render_embeddings_html(result, png, title=f"gptlab embeddings: {model_name}")
    )


def write_views(model, tokenizer, out_dir, model_name: str = "the model"):
    """The default analysis (for ``gptlab analyze all``), written into ``out_dir``; the page's path.
    Adapts the defaults to the tokenizer: pairs it cannot encode are left out, and when fewer than
    two default words are single tokens (a character-level vocabulary) the map shows the
    vocabulary's own printable pieces instead."""
    from gptlab.errors import GptlabError
    from gptlab.interpret.embeddings import DEFAULT_PAIRS, DEFAULT_TOKENS, analyze_embeddings, resolve_tokens

    def encodes(text: str) -> bool:
        try:
            return bool(tokenizer.encode(text))
        except GptlabError:
            return False

    pairs = [p for p in DEFAULT_PAIRS if encodes(p[0]) and encodes(p[1])]
    pairs = pairs or [
        (a.lower(), b.lower()) for a, b in DEFAULT_PAIRS if encodes(a.lower()) and encodes(b.lower())
    ]
    tokens = list(DEFAULT_TOKENS)
    if len(resolve_tokens(tokenizer, tokens)[0]) < 2:
        pieces = [tokenizer.decode([i]) for i in range(min(tokenizer.vocab_size, 64))]
        tokens = [p for p in pieces if p.strip() and p.isprintable()]
    single = resolve_tokens(tokenizer, tokens)[1]  # the words that are one token, as decoded
    if encodes(" the") and len(tokenizer.encode(" the")) == 1:
        token = " the"
    else:  # a small vocabulary: the first word that is one token (never a multi-token default)
        token = single[0] if single else tokens[0]
    result = analyze_embeddings(model, tokenizer, token=token, pairs=pairs, tokens=tokens)
    return write_page(result, out_dir, model_name)


def _print_tables(result: dict, titles: dict[str, str]) -> None:
    print(f"nearest tokens to {result['token']!r} (cosine of token-embedding rows):")
    for i, r in enumerate(result["neighbours"], 1):
        print(f"  {i:>3}  {r['token']!r:<20} {r['cosine']:7.4f}")

    encoders = result["similarity"]["encoders"]
    rows = result["similarity"]["rows"]
    names = [f"{a} | {b}" for a, b in ((r["a"], r["b"]) for r in rows)]
    width = min(max(len(n) for n in names), 70)
    print(f"\nsentence similarity (cosine of mean-pooled hidden states, layer {result['layer']}):")
    print(f"  {'pair':<{width}}  " + "  ".join(f"{titles.get(e, e):>12.12}" for e in encoders))
    for name, r in zip(names, rows):
        shown = name if len(name) <= width else name[: width - 3] + "..."
        print(f"  {shown:<{width}}  " + "  ".join(f"{r[e]:12.4f}" for e in encoders))
    for note in result["notes"]:
        print(f"  note: {note}")

    pca = result["pca"]
    ratio = pca["explained_variance_ratio"]
    print(f"\nPCA of token embeddings (PC1 {100 * ratio[0]:.1f}%, PC2 {100 * ratio[1]:.1f}% of variance):")
    for label, (x, y) in zip(pca["labels"], pca["points"]):
        print(f"  {label!r:<14} {x:8.4f} {y:8.4f}")
    if result["skipped_tokens"]:
        print("  not single tokens, left out: " + ", ".join(map(repr, result["skipped_tokens"])))

    c = result["clusters"]
    print(f"\nDBSCAN clusters ({c['metric']}, eps {c['eps']:g}, min_samples {c['min_samples']}):")
    for i, members in enumerate(c["clusters"], 1):
        print(f"  {i:>3}: " + ", ".join(map(repr, members)))
    print("  noise: " + (", ".join(map(repr, c["noise"])) or "none"))
