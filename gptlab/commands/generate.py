"""``gptlab generate``: sample text from a run directory or a Hugging Face GPT-2 directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from gptlab.commands import positive_int, seed_type
from gptlab.commands.sampling import add_sampling_arguments, sampler_from_args
from gptlab.errors import GptlabError
from gptlab.generate import DEFAULT_MAX_NEW_TOKENS, encode_prompt, stream_text, text_pieces
from gptlab.model.decode_layout import to_decode_layout
from gptlab.model.modes import model_device
from gptlab.rundir import load_model
from gptlab.speculative import DEFAULT_DRAFT_K, SpeculativeStats, check_draft, speculative_tokens


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
    p.add_argument(
        "--best-of",
        type=positive_int,
        metavar="N",
        help="sample N completions, keep the one --reward scores highest",
    )
    p.add_argument("--reward", metavar="RUN", help="the reward model of --best-of (`gptlab finetune reward`)")
    p.add_argument(
        "--draft",
        metavar="RUN",
        help="speculative decoding: a smaller model with the same tokenizer proposes tokens that --model checks",
    )
    p.add_argument(
        "--draft-k",
        type=positive_int,
        default=DEFAULT_DRAFT_K,
        metavar="K",
        help="tokens the draft proposes per round (default: %(default)s)",
    )
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument(
        "--dtype",
        help=(
            "auto (bfloat16 where this CPU/GPU runs it natively, else float32), float32 (fp32), "
            "bfloat16 (bf16) or float16 (default: as stored)"
        ),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.stream and args.json:
        raise GptlabError("--stream and --json cannot be combined")
    if args.num_samples < 1:
        raise GptlabError(f"--num-samples must be >= 1, got {args.num_samples}")
    if (args.best_of is None) != (args.reward is None):
        raise GptlabError("--best-of N and --reward RUN go together")
    if args.best_of and args.stream:
        raise GptlabError("--best-of picks among finished completions: it cannot --stream")
    if args.draft and args.best_of:
        raise GptlabError("--draft and --best-of cannot be combined")
    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    model = to_decode_layout(model)  # the faster batch-1 CPU layout, same logits (a no-op elsewhere)
    sampler = sampler_from_args(args)
    if args.best_of:
        return run_best_of(args, model, tokenizer, sampler)
    pieces, extra = _text_source(args, model, tokenizer, sampler)
    samples = []
    start = time.perf_counter()
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        if i and not args.json:
            print("\n---------------")
        if args.stream:
            sys.stdout.write(args.prompt)
            for piece in pieces(seed):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            continue
        completion = "".join(pieces(seed))
        samples.append({"seed": seed, "completion": completion})
        if not args.json:
            print(args.prompt + completion)
    report = extra(time.perf_counter() - start)
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
                    **report,
                },
                ensure_ascii=False,
            )
        )
    elif report:
        spec = report["speculative"]
        rate = spec["acceptance_rate"]
        print(f"(draft acceptance {'n/a' if rate is None else f'{rate:.1%}'}, {spec['tokens']} tokens in "
              f"{spec['target_forwards']} target forwards)", file=sys.stderr)  # fmt: skip
    return 0


def _text_source(args: argparse.Namespace, model, tokenizer, sampler):
    """(seed -> text pieces of one completion, seconds -> extra --json keys): plain decoding, or
    speculative decoding with `--draft` (gptlab.speculative), which reports its acceptance and speed."""
    settings = dict(max_new_tokens=args.max_new_tokens, sampler=sampler, stop=args.stop)
    if not args.draft:
        return (lambda seed: stream_text(model, tokenizer, args.prompt, seed=seed, **settings)), (
            lambda s: {}
        )
    draft, draft_tokenizer = load_model(args.draft, device=str(model_device(model)), dtype=args.dtype)
    draft = to_decode_layout(draft)
    check_draft(model, draft, tokenizer, draft_tokenizer)
    prompt_ids = encode_prompt(tokenizer, args.prompt)
    stats = SpeculativeStats()

    def pieces(seed):
        generator = None if seed is None else torch.Generator(device=model_device(model)).manual_seed(seed)
        tokens = speculative_tokens(model, draft, prompt_ids, args.max_new_tokens, sampler, tokenizer.eot_id,
                                    generator, k=args.draft_k, stats=stats)  # fmt: skip
        return text_pieces(tokens, tokenizer, args.stop)

    def extra(seconds: float) -> dict:
        return {"speculative": {"draft": args.draft, "k": args.draft_k, **stats.to_dict(), "tokens": stats.emitted,
                                "seconds": seconds, "tokens_per_s": stats.emitted / seconds if seconds > 0 else None}}  # fmt: skip

    return pieces, extra


def run_best_of(args: argparse.Namespace, model, tokenizer, sampler) -> int:
    """`--best-of N --reward RUN`: each sample is the best of N (gptlab.finetune.reward.best_of_n)."""
    from gptlab.finetune.reward import best_of_n, load_reward

    reward = load_reward(args.reward, device=str(next(model.parameters()).device))
    prompt_ids = encode_prompt(tokenizer, args.prompt)
    samples = []
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        candidates = best_of_n(
            model, tokenizer, prompt_ids, reward, args.best_of, args.max_new_tokens, sampler, seed
        )
        best = next(c for c in candidates if c["best"])
        samples.append(
            {
                "seed": seed,
                "completion": best["completion"],
                "reward": best["reward"],
                "candidates": candidates,
            }
        )
        if not args.json:
            print(("\n---------------\n" if i else "") + args.prompt + best["completion"])
            rewards = ", ".join(f"{c['reward']:.3f}" for c in candidates)
            print(f"(reward {best['reward']:.4f}, best of {args.best_of}: {rewards})")
    if args.json:
        print(json.dumps({"model": args.model, "reward_model": args.reward, "prompt": args.prompt, "best_of": args.best_of,
                          **dataclasses.asdict(sampler), "samples": samples}, ensure_ascii=False))  # fmt: skip
    return 0
