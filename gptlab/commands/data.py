"""``gptlab data list|get|prepare|text|prefs|instructions``: the dataset registry, token shards, field
texts, preference pairs and synthetic instruction suites (gptlab.data)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gptlab.commands import add_overwrite, positive_int, seed_type
from gptlab.errors import GptlabError

EOT = "<|endoftext|>"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="download named datasets and prepare token shards",
        description=(
            "Download named public datasets (checked by SHA-256); tokenize text into train/val token shards."
        ),
    )
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    lst = sub.add_parser(
        "list",
        help="show the dataset registry",
        description="Show the named datasets, their source, license, and whether they are cached.",
    )
    lst.add_argument(
        "--dir",
        metavar="DIR",
        help="cache folder to look in (default: $GPTLAB_CACHE/datasets or ~/.cache/gptlab/datasets)",
    )
    lst.add_argument("--json", action="store_true", help="print machine-readable JSON")
    lst.set_defaults(func=run_list)

    get = sub.add_parser(
        "get",
        help="download a named dataset into the cache (or reuse the cached copy) and print its path",
        description=(
            "Download a named dataset, verify its SHA-256 (for entries with a pinned hash) and print the "
            "local path. A cached file with the right hash is reused without network access. "
            "GPTLAB_DATA_MIRROR=URL downloads from URL/<filename> instead of upstream, GPTLAB_DATA_MIRROR=FOLDER "
            "(any value without ://) copies FOLDER/<filename>, checked the same way. Only https:// "
            "sources (and http:// to this machine, a local mirror) are accepted."
        ),
    )
    get.add_argument("name", help="dataset name (see `gptlab data list`)")
    get.add_argument(
        "--dir",
        metavar="DIR",
        help="folder to store it in (default: $GPTLAB_CACHE/datasets or ~/.cache/gptlab/datasets)",
    )
    get.add_argument("--url", help="download from this URL instead (the hash is still checked)")
    get.add_argument("--force", action="store_true", help="download again even if a valid copy is cached")
    get.add_argument(
        "--allow-insecure-url",
        action="store_true",
        help="accept a source that is not https:// (http:// to another host, file://, ...; also "
        "GPTLAB_ALLOW_INSECURE_URLS=1)",
    )
    get.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept an entry without a pinned sha256 (its content cannot be checked)",
    )
    get.add_argument("--json", action="store_true", help="print machine-readable JSON")
    get.set_defaults(func=run_get)

    prep = sub.add_parser(
        "prepare",
        help="tokenize a corpus of any size into fixed-size token shards with a manifest",
        description=(
            "Stream text files, JSONL (--text-field), Parquet and .gz/.zst-compressed files, or folders of "
            "them (recursive, sorted), through --workers tokenizer processes into train-NNNNN.bin / "
            "val-NNNNN.bin shards of --shard-tokens tokens, tokenizer.json and meta.json (the manifest) in "
            "--out. Each text file, JSON line or Parquet row is one document, followed by <|endoftext|> "
            "when the tokenizer has it; whole documents are held out for validation (a seeded choice), "
            "topped up from the tail of the stream when there are too few. An interrupted run continues "
            "with --resume. The ids do not depend on --workers."
        ),
    )
    prep.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files or folders (read recursively): text, .jsonl, .parquet, optionally .gz / .zst",
    )
    prep.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSONL field / Parquet column (default: text)"
    )
    prep.add_argument(
        "--separator",
        metavar="TEXT",
        help="in text files, TEXT ends a document (e.g. '<|endoftext|>' for TinyStories); default: one "
        "document per file",
    )
    prep.add_argument(
        "--shard-tokens",
        type=positive_int,
        default=100_000_000,
        metavar="N",
        help="tokens per shard file (default: %(default)s)",
    )
    prep.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished preparation in --out (same inputs and settings)",
    )
    prep.add_argument(
        "--tokenizer",
        metavar="TOK",
        help=f"a gptlab tokenizer file, or 'char' to build a character tokenizer (the input's characters "
        f"and {EOT}); or leave it out and give --vocab-size",
    )
    prep.add_argument(
        "--vocab-size",
        type=positive_int,
        metavar="N",
        help=f"train a byte-level BPE tokenizer with N tokens (including {EOT}) on the input first",
    )
    prep.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_overwrite(prep, "DIR")
    prep.add_argument(
        "--val-fraction", type=float, default=0.1, metavar="F", help="share of tokens held out for validation"
    )
    prep.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="tokenizer processes (default: one per core for inputs over 4 MB, else 1; the ids are the same)",
    )
    prep.add_argument("--seed", type=seed_type, default=0, help="seed of the document-level split")
    prep.add_argument("--json", action="store_true", help="print meta.json as machine-readable JSON")
    prep.set_defaults(func=run_prepare)

    text = sub.add_parser(
        "text",
        help="write the text of JSONL fields as plain lines (to train a tokenizer or pretrain on)",
        description=(
            "Read a JSONL (or JSON list) file and write the text of the given fields, record by record "
            "and field by field, one text a line (newlines inside a text become spaces): e.g. both "
            "sides of a translation file, for a tokenizer that knows both languages."
        ),
    )
    text.add_argument("--input", nargs="+", required=True, metavar="FILE", help="JSONL / JSON files")
    text.add_argument(
        "--fields", required=True, metavar="LIST", help="comma-separated field names, e.g. en,de"
    )
    text.add_argument("--out", required=True, metavar="FILE.txt", help="the text file to write")
    add_overwrite(text, "FILE.txt")
    text.set_defaults(func=run_text)

    prefs = sub.add_parser(
        "prefs",
        help="build preference pairs from instruction data: reference = chosen, the model's response = rejected",
        description=(
            "For each Alpaca-format example, generate the model's greedy response (with the run's template) "
            "and write {prompt, input, chosen: the reference output, rejected: the model's response} as JSONL, "
            "for `gptlab finetune dpo` and `finetune reward`. Examples the model already answers exactly are "
            "dropped."
        ),
    )
    prefs.add_argument(
        "--from", dest="source", required=True, metavar="FILE", help="instruction data (JSON/JSONL)"
    )
    prefs.add_argument("--model", required=True, metavar="RUN", help="the model whose responses are rejected")
    prefs.add_argument("--out", required=True, metavar="FILE.jsonl", help="the preference file to write")
    prefs.add_argument("--limit", type=positive_int, metavar="N", help="the first N examples only")
    prefs.add_argument("--max-new-tokens", type=positive_int, default=128, help="default: %(default)s")
    prefs.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    add_overwrite(prefs, "FILE.jsonl")
    prefs.add_argument("--json", action="store_true", help="print a summary as JSON")
    prefs.set_defaults(func=run_prefs)

    ins = sub.add_parser(
        "instructions",
        help="write a synthetic instruction suite (Alpaca JSON), e.g. the tasks the injection audit probes",
        description=(
            "Write a synthetic, seeded instruction suite as an Alpaca-format JSON list. probe-tasks: the "
            "tasks of `gptlab audit injection` (its exact instructions and secret convention, never its "
            "inputs) plus say/recall/copy/format/count/fact tasks, which a tiny GPT learns in minutes."
        ),
    )
    ins.add_argument("--kind", required=True, choices=("probe-tasks",), help="which suite")
    ins.add_argument("--out", required=True, metavar="FILE.json", help="the JSON file to write")
    ins.add_argument("--n", type=positive_int, default=3000, help="number of examples (default 3000)")
    ins.add_argument("--seed", type=seed_type, default=0, help="seed of the examples")
    ins.add_argument("--json", action="store_true", help="print a JSON summary (file, n, examples per task)")
    add_overwrite(ins, "FILE.json")
    ins.set_defaults(func=run_instructions)


def run_list(args: argparse.Namespace) -> int:
    from gptlab.data.registry import list_datasets

    rows = list_datasets(args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        size = f"{row['size']:,} bytes" if row["size"] else "size unknown"
        pin = "sha256" if row["sha256"] else "git blob id" if row["git_blob"] else None
        check = f"{pin} pinned" if pin else "sha256 not pinned (unverified)"
        print(f"{row['name']}: {row['description']}")
        print(f"    {size}, {check}; license: {row['license']}")
        print(f"    {row['url']}")
        print(f"    cached: {row['cached'] or 'no'}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    from gptlab.data.registry import download, file_sha256, get_entry

    path = download(
        args.name,
        args.dir,
        url=args.url,
        force=args.force,
        allow_insecure_url=args.allow_insecure_url,
        allow_unverified=args.allow_unverified,
    )
    entry = get_entry(args.name)
    if not entry.verified:  # only reached with --allow-unverified: say what was not checked
        print(
            f"warning: {args.name} has no pinned sha256: {path} is complete but its content is unverified",
            file=sys.stderr,
        )
    if args.json:
        info = {
            "name": args.name,
            "path": str(path),
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
        }
        print(json.dumps(info | {"verified": entry.verified}, indent=2))
    else:
        print(path)
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from gptlab.data.shards import TOKENIZER_FILE
    from gptlab.data.streaming import prepare_corpus
    from gptlab.outputs import claim_folder

    inputs = [Path(p) for p in args.input]
    tokenizer_file = args.tokenizer if args.tokenizer not in (None, "char") else None
    if args.resume:
        if args.overwrite:
            raise GptlabError("give --resume (continue) or --overwrite (start again), not both")
        if tokenizer_file is None:  # the tokenizer the run started with, not a new one
            args.tokenizer, args.vocab_size = str(Path(args.out) / TOKENIZER_FILE), None
    else:
        # before training a tokenizer, not after; never into (or over) an input
        claim_folder(
            args.out, what="data folder", overwrite=args.overwrite, sources=[*inputs, tokenizer_file]
        )
    tokenizer = _make_tokenizer(args, inputs)
    meta = prepare_corpus(
        inputs,
        tokenizer,
        args.out,
        shard_tokens=args.shard_tokens,
        val_fraction=args.val_fraction,
        workers=args.workers,
        seed=args.seed,
        text_field=args.text_field,
        separator=args.separator,
        resume=args.resume,
    )
    if args.json:
        print(json.dumps(meta, indent=2, ensure_ascii=False))
        return 0
    splits, shards = meta["splits"], meta["shards"]
    print(
        f"wrote {args.out}: {splits['train']['tokens']:,} train + {splits['val']['tokens']:,} val tokens in "
        f"{len(shards['train'])} + {len(shards['val'])} shards ({meta['documents']:,} documents, split by "
        f"{meta['split']['method']}, {meta['dtype']}, vocab_size {meta['vocab_size']})"
    )
    return 0


def run_text(args: argparse.Namespace) -> int:
    from gptlab.data.pairs import field_texts
    from gptlab.io import atomic_write_text
    from gptlab.outputs import claim_file

    claim_file(args.out, what="text file", overwrite=args.overwrite, sources=args.input)
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    lines = [line for path in args.input for line in field_texts(path, fields)]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(lines):,} lines, {sum(map(len, lines)):,} characters")
    return 0


def run_prefs(args: argparse.Namespace) -> int:
    from gptlab.data.tasks import load_instructions
    from gptlab.finetune.prefs import build_preferences
    from gptlab.io import atomic_write_text
    from gptlab.model.modes import resolve_device
    from gptlab.outputs import claim_file
    from gptlab.run import Run

    claim_file(args.out, what="preference file", overwrite=args.overwrite, sources=[args.source, args.model])
    examples = load_instructions(args.source)[: args.limit]
    run = Run.open(args.model)
    gpt, tokenizer = run.load(device=str(resolve_device(args.device)))
    rows = build_preferences(gpt, tokenizer, examples, run.template, args.max_new_tokens)
    atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    summary = {"out": str(args.out), "examples": len(examples), "pairs": len(rows), "template": run.template,
               "dropped_exact": len(examples) - len(rows)}  # fmt: skip
    print(
        json.dumps(summary)
        if args.json
        else f"wrote {args.out}: {len(rows)} pairs from {len(examples)} examples"
    )
    return 0


def run_instructions(args: argparse.Namespace) -> int:
    from gptlab.data.probe_tasks import instruction_suite
    from gptlab.io import atomic_write_json
    from gptlab.outputs import claim_file

    claim_file(args.out, what="instruction file", overwrite=args.overwrite)
    records = instruction_suite(args.kind, args.n, args.seed)
    atomic_write_json(args.out, records)
    summary = {"out": str(args.out), "kind": args.kind, "n": len(records), "seed": args.seed}
    print(json.dumps(summary) if args.json else f"wrote {args.out}: {len(records):,} {args.kind} examples")
    return 0


def _make_tokenizer(args: argparse.Namespace, inputs: list[Path]):
    """Load --tokenizer, or build one from the input (--tokenizer char, or --vocab-size N), read as
    `data prepare` reads it (any format, --text-field)."""
    from gptlab.data.readers import corpus_files, iter_pieces

    if args.tokenizer and args.vocab_size is not None:
        raise GptlabError("give either --tokenizer or --vocab-size (to train a BPE tokenizer), not both")
    texts = (p.text for p in iter_pieces(corpus_files(inputs), args.text_field, separator=args.separator))
    if args.tokenizer == "char":
        from gptlab.tokenizers import CharTokenizer

        # <|endoftext|> too, so documents stay separated as with BPE; the characters are collected
        # piece by piece, so this streams like prepare itself
        return CharTokenizer.train(texts, special_tokens=[EOT])
    if args.vocab_size is not None:
        from gptlab.tokenizers import BPETokenizer

        # BPE training holds its input in memory: for a big corpus train on a sample
        # (`gptlab tokenizer train`) and pass --tokenizer
        return BPETokenizer.train("\n".join(texts), vocab_size=args.vocab_size, special_tokens=[EOT])
    if args.tokenizer:
        from gptlab.tokenizers import load_tokenizer

        return load_tokenizer(args.tokenizer)
    raise GptlabError("give --tokenizer TOK.json, --tokenizer char, or --vocab-size N")
