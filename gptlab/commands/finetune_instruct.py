"""``gptlab finetune instruct``: instruction fine-tuning (thin wrapper over gptlab.finetune.instruct)."""

from __future__ import annotations

import argparse
import json


def register_instruct(tasks) -> None:
    from gptlab.commands import positive_int
    from gptlab.commands.finetune import add_common_training, add_lora_arguments

    parser = tasks.add_parser(
        "instruct",
        help="instruction fine-tuning on Alpaca-format JSON/JSONL (instruction, input, output)",
        description=(
            "Train a pretrained GPT to follow instructions: prompt + response + <|endoftext|> with the Alpaca "
            "or chat template. Then generate responses for the test split (responses.json), score them with "
            "ROUGE-L, BLEU and exact match against the references, next to the base model's responses."
        ),
    )
    add_common_training(parser, epochs=2, batch_size=8, lr=1e-4)
    parser.set_defaults(val_fraction=0.05, test_fraction=0.1, weight_decay=0.1)
    parser.add_argument("--template", choices=("alpaca", "chat"), default="alpaca", help="prompt template")
    parser.add_argument("--mask-prompt", action="store_true", help="no loss on the prompt tokens")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=128, help="response length for the evaluation"
    )
    parser.add_argument(
        "--max-test-examples", type=positive_int, help="evaluate on the first N test examples only"
    )
    parser.add_argument("--no-base-comparison", action="store_true", help="skip the base model's responses")
    add_lora_arguments(parser)
    parser.set_defaults(func=run_instruct)


def run_instruct(args: argparse.Namespace) -> int:
    from gptlab.commands.finetune import claim_output, lora_options
    from gptlab.finetune.instruct import InstructOptions, finetune_instruct

    claim_output(args)
    options = InstructOptions(
        model=args.model,
        data=args.data,
        out=args.out,
        template=args.template,
        mask_prompt=args.mask_prompt,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        lora=lora_options(args),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        max_minutes=args.max_minutes,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        max_test_examples=args.max_test_examples,
        compare_base=not args.no_base_comparison,
        progress=not args.no_progress and not args.json,
    )

    def on_epoch(r: dict) -> None:
        if not args.json:
            print(
                f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} | val loss {r['val_loss']:.4f}"
                + ("  (best)" if r.get("best") else ""),
                flush=True,
            )

    result = finetune_instruct(options, on_epoch=on_epoch)
    if args.json:
        print(json.dumps(result.summary, indent=2))
        return 0
    base = result.base_scores or {}
    print(f"\ntest responses ({result.scores['n']}): {result.out_dir / 'responses.json'}")
    print(f"{'metric':<18} {'base':>10} {'fine-tuned':>10}")
    for key in ("rougeL_f", "bleu", "exact_match", "distinct_2", "mean_words"):
        b = base.get(key)
        print(f"{key:<18} {'' if b is None else f'{b:10.4f}':>10} {result.scores[key]:10.4f}")
    f = result.summary.get("forgetting") or {}
    if f.get("before") and f.get("after"):
        print(
            f"pretraining val perplexity: {f['before']['perplexity']:.2f} before, "
            f"{f['after']['perplexity']:.2f} after"
        )
    print(f"report: {result.out_dir / 'report.html'}")
    return 0
