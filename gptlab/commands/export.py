"""``gptlab export --model RUN --format hf --out DIR``: write a run as a Hugging Face GPT-2 model."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a gptlab run to Hugging Face GPT-2 format",
        description=(
            "Write config.json, model.safetensors and the tokenizer files (vocab.json, merges.txt) that "
            "transformers.GPT2LMHeadModel.from_pretrained(DIR) loads. Only GPT-2's architecture exports: "
            "learned positions and LayerNorm."
        ),
    )
    p.add_argument("--model", required=True, metavar="RUN", help="run directory")
    p.add_argument("--format", choices=["hf"], required=True, help="target format")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write")
    add_overwrite(p, "DIR")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.convert import export_to_hf
    from gptlab.run import Run

    Run.create(args.out, what="export folder", overwrite=args.overwrite, sources=[args.model])
    out = export_to_hf(args.model, args.out)
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if args.json:
        print(json.dumps({"model": args.model, "out": str(out), "files": files}))
    else:
        print(f"exported {args.model} -> {out} ({', '.join(files)})")
    return 0
