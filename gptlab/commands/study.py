"""``gptlab study``: the staged study (gptlab.study): pretrain, architecture, benchmarks,
vulnerabilities and the report, resumable; rerunning into the same --out continues it.
``gptlab study compare A B --out DIR``: two finished studies side by side (gptlab.study.compare).

One parser serves both forms: ``compare`` is never a study override (those are key=value)."""

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
            "it first. Presets: study-tiny, study-quick, study-full (docs/study.md). "
            "`gptlab study compare A B --out DIR` writes DIR/compare.md and DIR/compare.html: two finished "
            "studies side by side, each difference with its 95% interval."
        ),
        usage=(
            "gptlab study --config NAME|FILE --out DIR [--model RUN] [--only ...] [--skip ...] [KEY=VALUE ...]\n"
            "       gptlab study compare STUDY_A STUDY_B --out DIR [--overwrite] [--json]"
        ),
    )
    p.add_argument("--config", metavar="NAME|FILE", help="a study preset or TOML file")
    p.add_argument(
        "--model", metavar="RUN", help="study this run instead of pretraining one (pretrain.model)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the study folder")
    p.add_argument("--only", metavar="STAGE,...", default="", help="run only these stages")
    p.add_argument("--skip", metavar="STAGE,...", default="", help="leave these stages out")
    p.add_argument("--overwrite", action="store_true", help="empty OUT first when it holds something else")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="study config overrides (or: compare STUDY_A STUDY_B)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.errors import GptlabError
    from gptlab.study import load_study_config, run_study

    if args.overrides[:1] == ["compare"]:
        return compare(args)
    if not args.config:
        raise GptlabError(
            "gptlab study: --config NAME|FILE is required (or: gptlab study compare A B --out DIR)"
        )
    overrides = list(args.overrides) + ([f"pretrain.model={json.dumps(args.model)}"] if args.model else [])
    config = load_study_config(args.config, overrides)
    result = run_study(
        config,
        args.out,
        only=[s for s in args.only.split(",") if s],
        skip=[s for s in args.skip.split(",") if s],
        overwrite=args.overwrite,
        progress=not args.json and not args.no_progress and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"ran: {', '.join(result.ran) or 'none'}; reused: {', '.join(result.reused) or 'none'}")
        print(f"report: {result.out_dir / 'study.html'}")
    return 0


def compare(args: argparse.Namespace) -> int:
    from gptlab.errors import GptlabError
    from gptlab.study.compare import compare_studies

    studies = args.overrides[1:]
    if len(studies) != 2:
        raise GptlabError(f"gptlab study compare: give two study folders, got {len(studies)}")
    extra = [f for f, given in (("--config", args.config), ("--model", args.model), ("--only", args.only),
                                ("--skip", args.skip)) if given]  # fmt: skip
    if extra:
        raise GptlabError(
            f"gptlab study compare: {', '.join(extra)} belong to running a study, not to compare"
        )
    result = compare_studies(studies[0], studies[1], args.out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"compared: {', '.join(result.compared) or 'no stage both studies have'}")
        for who, stages in zip(result.labels, (result.only_a, result.only_b)):
            if stages:
                print(f"only in {who}: {', '.join(stages)}")
        print(f"report: {result.out_dir / 'compare.html'}")
    return 0
