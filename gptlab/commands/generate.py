"""``gptlab generate``: sample text from a run directory or a Hugging Face GPT-2 directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from gptlab.commands import positive_int, seed_type
from gptlab.commands.sampling import add_sampling_arguments, sampler_from_args
from gptlab.errors import GptlabError
from gptlab.generate import DEFAULT_MAX_NEW_TOKENS, generate_text, stream_text
from gptlab.rundir import load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample text from a trained or converted model",
        description=(
            "Continue a prompt with a model. Sampling: repetition penalty, then temperature (0: greedy), "
            "top-k, top-p. An empty prompt starts from <|endoftext|>. A prompt longer than the context keeps "
            "its last block_size tokens, and the context slides once it is full."
        ),
    )
    p.add_argument(
        "--model", required=True, metavar="RUN", help="run directory or Hugging Face GPT-2 directory"
    )
    p.add_argument("--prompt", default="", help="text to continue (default: empty, start from <|endoftext|>)")
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="default: %(default)s",
    )
    add_sampling_arguments(p)
    p.add_argument(
        "--stop", action="append", default=[], metavar="S", help="stop before this text (repeatable)"
    )
    p.add_argument("--seed", type=seed_type, help="random seed; sample i uses seed + i")
    p.add_argument(
        "--num-samples", type=positive_int, default=1, help="how many completions (default: %(default)s)"
    )
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: as stored)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.stream and args.json:
        raise GptlabError("--stream and --json cannot be combined")
    if args.num_samples < 1:
        raise GptlabError(f"--num-samples must be >= 1, got {args.num_samples}")
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    sampler = sampler_from_args(args)
    settings = dict(max_new_tokens=args.max_new_tokens, sampler=sampler, stop=args.stop)
    samples = []
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        if i and not args.json:
            print("\n---------------")
        if args.stream:
            sys.stdout.write(args.prompt)
            for piece in stream_text(model, tokenizer, args.prompt, seed=seed, **settings):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            continue
        completion = generate_text(model, tokenizer, args.prompt, seed=seed, **settings)
        samples.append({"seed": seed, "completion": completion})
        if not args.json:
            print(args.prompt + completion)
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "prompt": args.prompt,
                    "max_new_tokens": args.max_new_tokens,
                    **dataclasses.asdict(sampler),
                    "stop": args.stop,
                    "samples": samples,
                },
                ensure_ascii=False,
            )
        )
    return 0
