"""``gptlab eval tasks --model RUN --tasks a,b``: benchmark tasks scored as lm-evaluation-harness
scores them (gptlab/eval/tasks); ``gptlab eval tasks --list`` names them."""

from __future__ import annotations

import argparse
import json
import sys

from gptlab.commands import add_overwrite, nonnegative_int, positive_int, seed_type
from gptlab.errors import GptlabError


def register_tasks(metrics) -> None:
    parser = metrics.add_parser(
        "tasks",
        help="benchmark tasks (LAMBADA, SST-2, ...) scored like lm-evaluation-harness",
        description=(
            "Score a model on benchmark tasks the way EleutherAI's lm-evaluation-harness does (same "
            "prompts, encoding and metrics), with standard errors and 95%% bootstrap intervals. Works "
            "on gptlab runs, instruction runs (their template), quantised runs and converted Hugging "
            "Face GPT-2. --list shows the tasks."
        ),
    )
    parser.add_argument("--list", action="store_true", help="list the tasks and exit")
    parser.add_argument("--model", metavar="RUN", help="a run directory or Hugging Face GPT-2 folder")
    parser.add_argument("--tasks", metavar="NAME[,NAME...]", help="the tasks to run, comma-separated")
    parser.add_argument(
        "--shots", type=nonnegative_int, default=0, help="few-shot examples per item (default 0)"
    )
    parser.add_argument("--limit", type=positive_int, help="score only the first N items of each task")
    parser.add_argument("--seed", type=seed_type, default=1234, help="seed of few-shot draws and bootstrap")
    parser.add_argument("--batch-size", type=positive_int, help="rows per forward pass (default: by memory)")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="scoring dtype"
    )
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, mps (default: cuda if available)"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="local task files: DIR/<task>/<file>")
    parser.add_argument(
        "--show-prompts", type=nonnegative_int, default=0, metavar="N", help="print N prompts per task"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--out", metavar="DIR", help="write tasks.json (every item) and tasks.html there")
    add_overwrite(parser, "tasks.json / tasks.html in --out", "--force")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run_tasks)


def _list(as_json: bool) -> int:
    from gptlab.eval.tasks import TASKS

    rows = [
        {"name": t.name, "family": t.family, "output_type": t.output_type, "metrics": list(t.metrics),
         "description": t.description}
        for t in TASKS.values()
    ]  # fmt: skip
    if as_json:
        print(json.dumps({"tasks": rows}, indent=2))
        return 0
    from gptlab.eval.tasks.report import text_table

    cells = [[r["name"], r["output_type"], ", ".join(r["metrics"]), r["description"]] for r in rows]
    print(text_table([["task", "request type", "metrics", "what it tests"], *cells]))
    return 0


def _print_prompts(result, stream) -> None:
    for name, prompts in result.prompts.items():
        for i, prompt in enumerate(prompts):
            print(f"--- {name} item {i}: context ---\n{prompt['context']}", file=stream)
            for cont in prompt["continuations"]:
                print(f"--- continuation: {cont!r}", file=stream)


def run_tasks(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if not args.model or not args.tasks:
        raise GptlabError("give --model RUN and --tasks NAME[,NAME...] (or --list)")
    from gptlab.eval.tasks import get_task
    from gptlab.eval.tasks.report import OUTPUT_FILES, format_table, jsonable, write_outputs
    from gptlab.eval.tasks.runner import TaskOptions, evaluate_run

    tasks = [get_task(name.strip()) for name in args.tasks.split(",") if name.strip()]
    if args.out:  # before any work: the files may be written, and none is replaced unless --overwrite
        from gptlab.commands import claim_views

        claim_views(args, list(OUTPUT_FILES))
    options = TaskOptions(
        shots=args.shots, limit=args.limit, seed=args.seed, batch_size=args.batch_size, dtype=args.dtype,
        device=args.device, data_dir=args.data_dir, show_prompts=args.show_prompts, progress=args.progress,
    )  # fmt: skip
    result = evaluate_run(args.model, tasks, options)
    _print_prompts(result, sys.stderr if args.json else sys.stdout)
    if args.out:
        write_outputs(result, args.out)
    if args.json:
        print(json.dumps(jsonable(result.to_json()), indent=2, allow_nan=False))
    else:
        print(format_table(result))
        if args.out:
            print(f"wrote {args.out}/tasks.json and {args.out}/tasks.html")
    return 0
