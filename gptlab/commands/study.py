"""``gptlab study``: the staged study (gptlab.study): pretrain, architecture, benchmarks,
vulnerabilities and the report, resumable; rerunning into the same --out continues it."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study",
        help="the whole study from one command: pretrain, architecture, benchmarks, audits, report",
        description=(
            "Run the stages of a study config into OUT/<stage>/ and write OUT/study.md and OUT/study.html. "
            "Rerunning into the same OUT continues the study: a finished stage whose inputs (its config "
            "section and the stages it reads) are unchanged is reused, a changed one re-runs with every "
            "stage downstream of it. An OUT that holds anything but a study is refused; --overwrite empties "
            "it first. Presets: study-tiny, study-quick, study-full (docs/study.md)."
        ),
    )
    p.add_argument("--config", required=True, metavar="NAME|FILE", help="a study preset or TOML file")
    p.add_argument(
        "--model", metavar="RUN", help="study this run instead of pretraining one (pretrain.model)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the study folder")
    p.add_argument("--only", metavar="STAGE,...", default="", help="run only these stages")
    p.add_argument("--skip", metavar="STAGE,...", default="", help="leave these stages out")
    p.add_argument("--overwrite", action="store_true", help="empty OUT first when it holds something else")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="study config overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.study import load_study_config, run_study

    overrides = list(args.overrides) + ([f"pretrain.model={json.dumps(args.model)}"] if args.model else [])
    config = load_study_config(args.config, overrides)
    result = run_study(
        config,
        args.out,
        only=[s for s in args.only.split(",") if s],
        skip=[s for s in args.skip.split(",") if s],
        overwrite=args.overwrite,
        progress=not args.json and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"ran: {', '.join(result.ran) or 'none'}; reused: {', '.join(result.reused) or 'none'}")
        print(f"report: {result.out_dir / 'study.html'}")
    return 0
