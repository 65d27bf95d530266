"""``analyze embeddings``: nearest tokens, sentence similarity beside a pretrained MiniLM, a PCA
map and DBSCAN clusters of token embeddings (gptlab/interpret/embeddings.py), with an HTML page
and a PNG of the map."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptlab.errors import GptlabError
from gptlab.interpret.analysis import AllOptions, AnalysisResult
from gptlab.options import option, positive_float, positive_int, word_list

if TYPE_CHECKING:
    from gptlab.run import Run

HELP = "nearest tokens, sentence similarity (beside a pretrained MiniLM), PCA and clusters of embeddings"
FILES = ("embeddings.html", "embeddings_pca.png")


def parse_pairs(spec: str) -> list[tuple[str, str]]:
    """'a|b;c|d' -> [("a", "b"), ("c", "d")]: the ``--pairs`` checker."""
    pairs = []
    for item in spec.split(";"):
        if not item.strip():
            continue
        parts = [p.strip() for p in item.split("|")]
        if len(parts) != 2 or not all(parts):
            raise argparse.ArgumentTypeError(f"each pair is two non-empty texts joined by '|', got {item!r}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise argparse.ArgumentTypeError(f"no pairs in {spec!r}; write them as 'a|b;c|d'")
    return pairs


@dataclass
class EmbeddingsOptions:
    token: str = option(" the", "the token whose nearest neighbours to list")
    pairs: list[tuple[str, str]] | None = option(
        None,
        "texts to compare, 'a|b;c|d' (default: dog|puppy, dog|car, king|queen, ... and sentence pairs)",
        type=parse_pairs,
    )
    tokens: list[str] | None = option(
        None,
        "comma-separated words for the PCA map and the clusters (default: about 20 common English "
        "words); each is tried as ' word' then 'word', words that are not one token are reported",
        type=word_list,
    )
    k: int = option(10, "nearest neighbours listed", type=positive_int)
    eps: float = option(0.5, "DBSCAN radius in cosine distance, 1 - cosine", type=positive_float)
    min_samples: int = option(2, "DBSCAN: neighbours a core point needs, itself included", type=positive_int)
    layer: int = option(-1, "layer for sentence vectors: 0 = embeddings, -1 = last")
    minilm: bool = option(True, "leave out the pretrained MiniLM column (no extra packages needed)")

    def __post_init__(self) -> None:
        if self.pairs is not None and not self.pairs:
            raise GptlabError("--pairs: no pairs given; write them as 'a|b;c|d'")
        if self.tokens is not None and not self.tokens:
            raise GptlabError("--tokens: no words given; give comma-separated words")
        if self.k < 1:
            raise GptlabError(f"--k must be >= 1, got {self.k}")


def run(run: Run, options: EmbeddingsOptions) -> AnalysisResult:
    from gptlab.interpret.embeddings import DEFAULT_PAIRS, DEFAULT_TOKENS, analyze_embeddings

    model, tokenizer = run.load()
    result = analyze_embeddings(
        model,
        tokenizer,
        token=options.token,
        pairs=list(DEFAULT_PAIRS) if options.pairs is None else options.pairs,
        tokens=list(DEFAULT_TOKENS) if options.tokens is None else options.tokens,
        k=options.k,
        eps=options.eps,
        min_samples=options.min_samples,
        minilm=options.minilm,
        layer=options.layer,
    )
    return AnalysisResult(
        result,
        table=lambda: _table(result),
        views=lambda: _views(result, str(run.path)),
        summary="neighbours, similarity beside MiniLM, PCA, clusters",
    )


def _views(result: dict, model_name: str) -> dict[str, str | bytes]:
    from gptlab.interpret.embeddings import plot_pca, render_embeddings_html

    pca = result["pca"]
    png = plot_pca(
        pca["points"],
        pca["labels"],
        title=f"token embeddings of {model_name}",
        explained=pca["explained_variance_ratio"],
    )
    page = render_embeddings_html(result, png, title=f"gptlab embeddings: {model_name}")
    return {FILES[0]: page, FILES[1]: png}


def in_all(run: Run, options: AllOptions) -> EmbeddingsOptions:
    """The defaults, adapted to the run's tokenizer: pairs it cannot encode are left out, and when
    fewer than two default words are single tokens (a character-level vocabulary) the map shows
    the vocabulary's own printable pieces instead."""
    from gptlab.interpret.embeddings import DEFAULT_PAIRS, DEFAULT_TOKENS, resolve_tokens

    tokenizer = run.tokenizer

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
    return EmbeddingsOptions(token=token, pairs=pairs, tokens=tokens)


def _table(result: dict) -> str:
    from gptlab.interpret.embeddings import ENCODER_TITLES

    lines = [f"nearest tokens to {result['token']!r} (cosine of token-embedding rows):"]
    lines += [
        f"  {i:>3}  {r['token']!r:<20} {r['cosine']:7.4f}" for i, r in enumerate(result["neighbours"], 1)
    ]

    encoders = result["similarity"]["encoders"]
    rows = result["similarity"]["rows"]
    names = [f"{a} | {b}" for a, b in ((r["a"], r["b"]) for r in rows)]
    width = min(max(len(n) for n in names), 70)
    lines.append(f"\nsentence similarity (cosine of mean-pooled hidden states, layer {result['layer']}):")
    lines.append(f"  {'pair':<{width}}  " + "  ".join(f"{ENCODER_TITLES.get(e, e):>12.12}" for e in encoders))
    for name, r in zip(names, rows):
        shown = name if len(name) <= width else name[: width - 3] + "..."
        lines.append(f"  {shown:<{width}}  " + "  ".join(f"{r[e]:12.4f}" for e in encoders))
    lines += [f"  note: {note}" for note in result["notes"]]

    pca = result["pca"]
    ratio = pca["explained_variance_ratio"]
    lines.append(
        f"\nPCA of token embeddings (PC1 {100 * ratio[0]:.1f}%, PC2 {100 * ratio[1]:.1f}% of variance):"
    )
    lines += [f"  {label!r:<14} {x:8.4f} {y:8.4f}" for label, (x, y) in zip(pca["labels"], pca["points"])]
    if result["skipped_tokens"]:
        lines.append("  not single tokens, left out: " + ", ".join(map(repr, result["skipped_tokens"])))

    c = result["clusters"]
    lines.append(f"\nDBSCAN clusters ({c['metric']}, eps {c['eps']:g}, min_samples {c['min_samples']}):")
    lines += [f"  {i:>3}: " + ", ".join(map(repr, members)) for i, members in enumerate(c["clusters"], 1)]
    lines.append("  noise: " + (", ".join(map(repr, c["noise"])) or "none"))
    return "\n".join(lines)
