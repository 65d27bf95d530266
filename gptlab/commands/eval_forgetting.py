"""``gptlab eval forgetting``: every run of a fine-tuning chain on every task, as a matrix with
intervals (JSON, Markdown table, heat map); a thin wrapper over gptlab.eval.forgetting. The eval
verb (gptlab/commands/eval.py) calls :func:`register_forgetting` on its sub-parsers."""

from __future__ import annotations

import argparse
import json
import sys

from gptlab.commands import add_overwrite, positive_int, word_list
from gptlab.options import template_text


def register_forgetting(metrics: argparse._SubParsersAction) -> None:
    parser = metrics.add_parser(
        "forgetting",
        help="the forgetting matrix: runs (base, A, A→B, ...) x tasks (lm, sentiment, translation)",
        description=(
            "Evaluate every run on every task and write the matrix (rows: runs, labelled by the chain of "
            "fine-tunes they record; columns: tasks) with 95%% bootstrap intervals over items: matrix.json, "
            "matrix.md and heatmap.png in --out. lm: perplexity of a text file (one item per line); "
            "sentiment: accuracy (a classifier's head, the chain's classifier head on a later run's GPT, or "
            "zero-shot prompting for a run with neither); translation: corpus BLEU and chrF of greedy outputs."
        ),
    )
    parser.add_argument(
        "--runs",
        required=True,
        metavar="LIST",
        help="comma-separated run directories, each optionally LABEL=RUN",
    )
    parser.add_argument(
        "--tasks",
        required=True,
        metavar="LIST",
        help="comma-separated KIND:FILE, KIND one of lm, sentiment, translation",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="the first N items of each task")
    parser.add_argument("--text-field", default="sentence", metavar="NAME", help="sentiment: text field")
    parser.add_argument("--label-field", default="label", metavar="NAME", help="sentiment: label field")
    parser.add_argument(
        "--label-words",
        type=word_list,
        default=["negative", "positive"],
        metavar="LIST",
        help="sentiment, prompting: one word per label, labels in sorted order (default negative,positive)",
    )
    parser.add_argument(
        "--template", type=template_text, metavar="TEXT", help="translation: prompt with {input}"
    )
    parser.add_argument("--input-field", metavar="NAME", help="translation: input field")
    parser.add_argument("--target-field", metavar="NAME", help="translation: reference field")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, metavar="N")
    parser.add_argument("--batch-size", type=positive_int, default=16, metavar="B")
    parser.add_argument("--resamples", type=positive_int, default=1000, metavar="N", help="bootstrap draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for matrix.json, matrix.md, heatmap.png"
    )
    add_overwrite(parser, "the files in a non-empty --out", "--force")
    parser.add_argument("--json", action="store_true", help="print matrix.json's content")
    parser.set_defaults(func=run_forgetting)


def run_forgetting(args: argparse.Namespace) -> int:
    from gptlab.eval.forgetting import (
        ForgettingOptions,
        evaluate_forgetting,
        parse_runs,
        parse_tasks,
        write_forgetting,
    )
    from gptlab.outputs import claim_folder

    runs, tasks = parse_runs(args.runs), parse_tasks(args.tasks)
    options = ForgettingOptions(
        limit=args.limit,
        text_field=args.text_field,
        label_field=args.label_field,
        label_words=tuple(args.label_words),
        template=args.template,
        input_field=args.input_field,
        target_field=args.target_field,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        resamples=args.resamples,
        seed=args.seed,
        device=args.device,
    )
    options.check()
    sources = [path for _, path in runs] + [t.path for t in tasks]
    claim_folder(args.out, what="output folder", overwrite=args.overwrite, sources=sources)

    def progress(row: str, task: str, cell) -> None:
        print(
            f"{row} / {task}: {cell.metric} {cell.value:.4f} [{cell.low:.4f}, {cell.high:.4f}]",
            file=sys.stderr,
        )

    matrix = evaluate_forgetting(runs, tasks, options, on_cell=None if args.json else progress)
    out = write_forgetting(matrix, args.out)
    if args.json:
        print(json.dumps(matrix.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(matrix.table())
    print(f"written: {out}/matrix.json, matrix.md, heatmap.png")
    return 0
