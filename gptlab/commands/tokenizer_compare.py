"""``gptlab tokenizer stats`` and ``gptlab tokenizer compare``: thin wrappers over gptlab.tokenizers.compare.

``register`` is called by gptlab/commands/tokenizer.py with the sub-parsers of the ``tokenizer`` verb.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.commands import positive_int
from gptlab.errors import GptlabError
from gptlab.tokenizers import compare


def register(subsub) -> None:
    stats = subsub.add_parser(
        "stats",
        help="how a tokenizer cuts a text: bytes/token, tokens/word, vocab usage, top and longest tokens",
        description="Tokenize a text with a gptlab tokenizer and summarize the result.",
    )
    stats.add_argument("--tokenizer", required=True, metavar="TOK.json", help="a gptlab tokenizer file")
    _add_text_args(stats)
    stats.add_argument(
        "--top-k",
        type=positive_int,
        default=compare.DEFAULT_TOP_K,
        help="how many top and longest tokens to list",
    )
    stats.add_argument("--json", action="store_true", help="print machine-readable JSON")
    stats.set_defaults(func=run_stats)

    cmp = subsub.add_parser(
        "compare",
        help="compare token counts of tokenizers per text and per script (BPE, char, SentencePiece, ...)",
        description=(
            "Count tokens, bytes per token and tokens per word for the same texts across tokenizers: "
            "ours (byte-level BPE at several vocab sizes, char-level) and SentencePiece trained on the "
            "same corpus, BERT's WordPiece, and tiktoken encodings cached offline. Without --text or "
            "--input, the built-in examples are used (emphasis, typos, numbers, code, other languages "
            'vs "I love AI!").'
        ),
    )
    _add_text_args(cmp)
    cmp.add_argument(
        "--examples",
        action="store_true",
        help="also compare the built-in examples (the default when no --text or --input is given)",
    )
    cmp.add_argument(
        "--train-input",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="files or folders to train our BPE, char and SentencePiece tokenizers on (default: the built-in corpus)",
    )
    cmp.add_argument(
        "--vocab-sizes",
        nargs="+",
        type=int,
        default=list(compare.DEFAULT_VOCAB_SIZES),
        metavar="N",
        help="vocab sizes for the trained BPE and SentencePiece tokenizers (default: %(default)s)",
    )
    cmp.add_argument(
        "--kinds",
        nargs="+",
        choices=compare.TOKENIZER_KINDS,
        default=list(compare.TOKENIZER_KINDS),
        help="which tokenizer families to include (default: all)",
    )
    cmp.add_argument(
        "--sp-model-type",
        choices=compare.SENTENCEPIECE_MODEL_TYPES,
        default="unigram",
        help="SentencePiece algorithm (default: %(default)s)",
    )
    cmp.add_argument(
        "--tokenizer",
        nargs="+",
        default=[],
        type=Path,
        metavar="TOK.json",
        help="also compare these saved gptlab tokenizers (named after their files)",
    )
    cmp.add_argument("--json", action="store_true", help="print machine-readable JSON")
    cmp.set_defaults(func=run_compare)


def _add_text_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="append", default=[], help="a text to tokenize (repeatable)")
    parser.add_argument("--input", nargs="+", default=[], type=Path, metavar="FILE", help="UTF-8 text files")


def _gather_texts(args: argparse.Namespace) -> dict[str, str]:
    """--text and --input as name -> text (files named by file name, or by path if names clash)."""
    from gptlab.data.corpus import read_text_file

    texts = {f"text{i + 1}": t for i, t in enumerate(args.text)}
    names = [p.name for p in args.input]
    for path in args.input:
        texts[path.name if names.count(path.name) == 1 else str(path)] = read_text_file(path)
    return texts


def run_stats(args: argparse.Namespace) -> int:
    from gptlab.tokenizers import load_tokenizer

    if args.top_k < 1:
        raise GptlabError(f"--top-k must be at least 1, got {args.top_k}")
    texts = _gather_texts(args)
    if not texts:
        raise GptlabError("give a text to tokenize with --input FILE... or --text TEXT")
    tokenizer = load_tokenizer(args.tokenizer)
    result = compare.tokenizer_stats(tokenizer, "\n".join(texts.values()), top_k=args.top_k)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(f"{args.tokenizer} on {', '.join(texts)}")
        print(result.format_table())
    return 0


def _training_corpus(paths: list[Path] | None) -> str:
    from gptlab.data.corpus import default_corpus, read_texts

    return "\n".join(read_texts(paths)) if paths else default_corpus()


def run_compare(args: argparse.Namespace) -> int:
    from gptlab.tokenizers import load_tokenizer

    for size in args.vocab_sizes:
        if size < 1:
            raise GptlabError(f"--vocab-sizes must be positive integers, got {size}")
    texts = _gather_texts(args)
    reference = None
    if args.examples or not texts:
        texts = {**compare.BUILTIN_EXAMPLES, **texts}
        reference = compare.BUILTIN_REFERENCE
    for name, text in texts.items():
        if not text.strip():
            raise GptlabError(f"text {name} is empty: nothing to tokenize")

    needs_training = {"bpe", "char", "sentencepiece"} & set(args.kinds)
    train_text = _training_corpus(args.train_input) if needs_training else ""
    encoders, notes = compare.builtin_tokenizers(
        train_text, vocab_sizes=args.vocab_sizes, kinds=args.kinds, sp_model_type=args.sp_model_type
    )
    for path in args.tokenizer:
        encoders[path.stem] = load_tokenizer(path).encode
    result = compare.compare_tokenizers(texts, encoders, reference=reference, notes=notes)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(result.format_table())
    return 0
