"""``gptlab tokenizer train|encode|decode`` (and ``stats|compare`` from tokenizer_compare).

Thin wrappers over ``gptlab.tokenizers``: ``train`` reads UTF-8 text files (an empty, binary or
missing file is an error naming it) and saves a byte-level BPE tokenizer JSON; ``encode`` prints
comma-separated ids that ``decode --ids`` reads back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from gptlab.commands import add_overwrite, positive_int
from gptlab.errors import GptlabError
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.bpe import DEFAULT_MIN_FREQUENCY, DEFAULT_VOCAB_SIZE


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train, use, inspect and compare tokenizers",
        description="Train a byte-level BPE tokenizer, encode and decode text, inspect and compare them.",
    )
    subsub = parser.add_subparsers(dest="tokenizer_command", metavar="COMMAND", required=True)

    train = subsub.add_parser(
        "train",
        help="train a byte-level BPE tokenizer on text files",
        description=(
            "Train a byte-level BPE tokenizer (GPT-2 style) on UTF-8 text files and save it as JSON. "
            "The vocabulary size counts the 256 byte tokens, the merges and the special tokens."
        ),
    )
    train.add_argument(
        "--input", nargs="+", required=True, type=Path, metavar="FILE", help="UTF-8 text files"
    )
    train.add_argument(
        "--vocab-size",
        type=positive_int,
        default=DEFAULT_VOCAB_SIZE,
        help="total vocabulary size (default: %(default)s)",
    )
    train.add_argument(
        "--out", required=True, type=Path, metavar="TOK.json", help="where to write the tokenizer"
    )
    train.add_argument(
        "--special",
        nargs="*",
        default=[EOT],
        metavar="TOKEN",
        help="special tokens (default: %(default)s; give --special with no value for none)",
    )
    train.add_argument(
        "--pattern",
        default="gpt2",
        help="pre-tokenization: gpt2 (default), gpt4 (cl100k style) or a regex",
    )
    train.add_argument(
        "--min-frequency",
        type=positive_int,
        default=DEFAULT_MIN_FREQUENCY,
        help="stop merging when no pair occurs this often (default: %(default)s)",
    )
    add_overwrite(train, "TOK.json")
    train.add_argument("--json", action="store_true", help="print a JSON summary (and no progress bar)")
    train.set_defaults(func=run_train)

    encode = subsub.add_parser(
        "encode",
        help="turn text into token ids",
        description="Encode text with a gptlab tokenizer; prints comma-separated ids (or JSON with --json).",
    )
    encode.add_argument(
        "--tokenizer", required=True, type=Path, metavar="TOK.json", help="a gptlab tokenizer file"
    )
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to encode")
    source.add_argument("--input", type=Path, metavar="FILE", help="a UTF-8 text file to encode")
    encode.add_argument(
        "--allow-special",
        action="store_true",
        help="turn special-token text such as <|endoftext|> into its special id (default: encode it as text)",
    )
    encode.add_argument("--json", action="store_true", help="print {ids, count, tokens} as JSON")
    encode.set_defaults(func=run_encode)

    decode = subsub.add_parser(
        "decode",
        help="turn token ids into text",
        description="Decode token ids with a gptlab tokenizer and print the text.",
    )
    decode.add_argument(
        "--tokenizer", required=True, type=Path, metavar="TOK.json", help="a gptlab tokenizer file"
    )
    decode.add_argument(
        "--ids", required=True, help="ids separated by commas and/or spaces, e.g. 15496,11,995"
    )
    decode.add_argument("--json", action="store_true", help="print {text} as JSON")
    decode.set_defaults(func=run_decode)

    from gptlab.commands import tokenizer_compare

    tokenizer_compare.register(subsub)


def run_train(args: argparse.Namespace) -> int:
    from gptlab.data.corpus import read_text_file
    from gptlab.outputs import claim_file
    from gptlab.tokenizers import BPETokenizer

    claim_file(args.out, what="tokenizer file", overwrite=args.overwrite, sources=args.input)
    texts = [read_text_file(path) for path in args.input]
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokenizer = BPETokenizer.train(
            texts,
            vocab_size=args.vocab_size,
            special_tokens=args.special,
            pattern=args.pattern,
            min_frequency=args.min_frequency,
            verbose=not args.json,
        )
    seconds = time.perf_counter() - start
    tokenizer.save(args.out)
    notes = [str(w.message) for w in caught]
    if args.json:
        summary = {
            "out": str(args.out),
            "vocab_size": tokenizer.vocab_size,
            "merges": len(tokenizer.merges),
            "special_tokens": tokenizer.special_tokens,
            "input_bytes": sum(len(t.encode("utf-8")) for t in texts),
            "seconds": round(seconds, 3),
            "warnings": notes,
        }
        print(json.dumps(summary, ensure_ascii=False))
    else:
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        print(
            f"wrote {args.out}: vocab_size {tokenizer.vocab_size} ({len(tokenizer.merges)} merges, "
            f"{len(tokenizer.special_tokens)} special tokens) in {seconds:.2f} s"
        )
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from gptlab.data.corpus import read_text_file
    from gptlab.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    text = args.text if args.text is not None else read_text_file(args.input)
    ids = tokenizer.encode(text, allowed_special="all" if args.allow_special else frozenset())
    if args.json:
        tokens = [tokenizer.token_bytes(i).decode("utf-8", errors="replace") for i in ids]
        print(json.dumps({"ids": ids, "count": len(ids), "tokens": tokens}, ensure_ascii=False))
    else:
        print(",".join(map(str, ids)))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from gptlab.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    ids = parse_ids(args.ids)
    text = tokenizer.decode(ids)
    if args.json:
        print(json.dumps({"text": text}, ensure_ascii=False))
    else:
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


def parse_ids(raw: str) -> list[int]:
    """ "1,2, 3" or "1 2 3" -> [1, 2, 3]; anything else is a GptlabError naming the bad item."""
    ids = []
    for item in raw.replace(",", " ").split():
        try:
            ids.append(int(item))
        except ValueError:
            raise GptlabError(
                f"--ids: {item!r} is not an integer token id (expected e.g. 15496,11,995)"
            ) from None
    return ids
