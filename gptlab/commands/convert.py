"""``gptlab convert --from hf SRC --out RUN``: import Hugging Face GPT-2 weights and tokenizer."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="import Hugging Face GPT-2 weights into a gptlab run directory",
        description=(
            "Read a Hugging Face GPT-2 directory (config.json, model.safetensors or pytorch_model.bin, "
            "vocab.json + merges.txt or tokenizer.json) and write a gptlab run directory. SRC may also be "
            "a hub name such as gpt2, downloaded with huggingface_hub when online."
        ),
    )
    p.add_argument("--from", dest="source_format", choices=["hf"], required=True, help="source format")
    p.add_argument(
        "source",
        metavar="SRC",
        help="Hugging Face GPT-2 directory, or a hub name (NAME or OWNER/NAME); a path that starts "
        "with . / ~, has more parts, or whose first part is a local folder is always a directory",
    )
    p.add_argument(
        "--revision",
        metavar="REV",
        help="hub downloads only: the branch, tag or commit to download (a commit hash pins the files)",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    add_overwrite(p, "RUN")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.convert import convert_from_hf
    from gptlab.run import Run

    Run.create(args.out, what="run directory", overwrite=args.overwrite, sources=[args.source])
    out, model = convert_from_hf(args.source, args.out, revision=args.revision)
    summary = {
        "source": args.source,
        **({"revision": args.revision} if args.revision is not None else {}),
        "out": str(out),
        "n_params": model.num_params(),
        **model.config.to_dict(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"converted {args.source} -> {out} ({summary['n_params']:,} parameters)")
    return 0
