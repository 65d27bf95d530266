"""``gptlab eval generation``: generate an output for every input of a JSONL file and score them
(corpus BLEU, chrF, ROUGE-1/2/L, exact match); a thin wrapper over
gptlab.eval.generation.evaluate_generation. The eval verb (gptlab/commands/eval.py) calls
:func:`register_generation` on its sub-parsers."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite, positive_int, word_list
from gptlab.options import template_text


def register_generation(metrics: argparse._SubParsersAction) -> None:
    from gptlab.eval.generation import METRICS

    parser = metrics.add_parser(
        "generation",
        help="generate outputs for a JSONL of inputs and score them: BLEU, chrF, ROUGE, exact match",
        description=(
            "Prompt a run with the input field of every example (through its prompt template), decode greedily "
            "or by beam search (--beams), and score the outputs against the target field: corpus BLEU and chrF "
            "(0-100, as sacrebleu), mean ROUGE-1/2/L F (0-1, as rouge-score) and the exact-match rate. A run "
            "fine-tuned with a prompt template (gptlab finetune instruct --template '...{input}...') recorded it "
            "and its fields, so --template and the fields are needed only to override them. A target field may "
            "hold a list of references."
        ),
    )
    parser.add_argument("--model", required=True, metavar="RUN", help="a run directory")
    parser.add_argument("--data", required=True, metavar="FILE", help="JSONL (or JSON list) of objects")
    parser.add_argument(
        "--input-field", metavar="NAME", help="field holding the input (default: as fine-tuned)"
    )
    parser.add_argument(
        "--target-field",
        metavar="NAME",
        help="field holding the reference(s) (default: the run's output field)",
    )
    parser.add_argument(
        "--template",
        type=template_text,
        metavar="TEXT",
        help="prompt string with {input} (\\n, \\t: newline, tab), or alpaca/chat (default: the run's)",
    )
    parser.add_argument(
        "--metrics",
        type=word_list,
        default=list(METRICS),
        metavar="LIST",
        help=f"comma-separated, some of {','.join(METRICS)} (default: all)",
    )
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=128, metavar="N", help="output length limit"
    )
    parser.add_argument("--beams", type=positive_int, default=1, metavar="K", help="beam width (1: greedy)")
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=1.0,
        help="beam score = log-prob / length**this (HF's; default 1)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="prompts per batch")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N examples only")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, mps (default: cuda if available)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="write outputs.jsonl (per-example scores) and results.json"
    )
    add_overwrite(parser, "outputs.jsonl / results.json in --out", "--force")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(func=run_generation)


def run_generation(args: argparse.Namespace) -> int:
    from gptlab.eval.generation import (
        OUTPUTS_FILE,
        RESULTS_FILE,
        GenerationOptions,
        evaluate_generation,
        write_outputs,
    )
    from gptlab.outputs import claim_files

    options = GenerationOptions(
        input_field=args.input_field,
        target_field=args.target_field,
        template=args.template,
        metrics=tuple(args.metrics),
        max_new_tokens=args.max_new_tokens,
        beams=args.beams,
        length_penalty=args.length_penalty,
        batch_size=args.batch_size,
        limit=args.limit,
        device=args.device,
    )
    options.check()  # bad settings fail before the output folder or the model is touched
    if args.out:
        claim_files(
            args.out, [OUTPUTS_FILE, RESULTS_FILE], overwrite=args.overwrite, sources=[args.model, args.data]
        )
    result = evaluate_generation(args.model, args.data, options)
    if args.out:
        write_outputs(result, args.out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    s = result.settings
    decoding = "greedy" if s["beams"] == 1 else f"beam search, {s['beams']} beams"
    print(
        f"{s['data']}: {result.scores['n']} examples, {s['input_field']} -> {s['target_field']}, {decoding}"
    )
    for key, value in result.scores.items():
        if key != "n":
            print(f"{key:<12} {value:.4f}")
    if args.out:
        print(f"outputs: {args.out}/{OUTPUTS_FILE}")
    return 0
