"""``gptlab analyze attention|lens|saliency|embeddings|sampling|all``: interpretability numbers for a
text as tables, JSON, and self-contained HTML pages (``--out DIR``); ``all`` writes every view and
an index.html. One subcommand per entry of gptlab.interpret.ANALYSES, its flags built from the
analysis's options dataclass; this file only adds --model/--json/--out, claims --out, prints and
writes. Heavy imports (torch, matplotlib) happen inside each analysis's run, so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import add_overwrite, claim_views
from gptlab.commands.options import add_dataclass_arguments, dataclass_from_args
from gptlab.interpret import ANALYSES, AllOptions, Analysis, all_files, run_all

MODEL_HELP = "run directory, classifier run or HF GPT-2 folder"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="interpretability: attention, logit lens, attributions, embeddings, sampling study",
        description="Analyse what a model does: per-head attention views and statistics, the logit lens, "
        "token attributions, embedding neighbours and similarity, a sampling study; tables, JSON and "
        "self-contained HTML.",
    )
    views = parser.add_subparsers(dest="view", metavar="VIEW", required=True)
    for name, analysis in ANALYSES.items():
        p = views.add_parser(name, help=analysis.help, description=analysis.help)
        p.add_argument("--model", required=True, metavar="RUN", help=MODEL_HELP)
        add_dataclass_arguments(p, analysis.options)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        p.add_argument("--out", metavar="DIR", help=f"also write {', '.join(analysis.files)} into DIR")
        add_overwrite(p, "those files")
        p.set_defaults(func=run_view, analysis=analysis)

    p = views.add_parser("all", help="every view for one text, as HTML pages with an index.html")
    p.add_argument("--model", required=True, metavar="RUN", help=MODEL_HELP)
    add_dataclass_arguments(p, AllOptions)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and the views")
    add_overwrite(p, "the views in DIR")
    p.set_defaults(func=run_every_view)


def run_view(args: argparse.Namespace) -> int:
    from gptlab.run import Run

    analysis: Analysis = args.analysis
    options = dataclass_from_args(analysis.options, args)  # refuses values no run could take
    claim_views(args, list(analysis.files))
    result = analysis.run(Run.open(args.model), options)
    page = result.write(args.out) if args.out else None
    if args.json:
        print(json.dumps(result.data if page is None else {**result.data, "html": str(page)}))
        return 0
    print(result.table())
    if page is not None:
        print(f"wrote {page}")
    return 0


def run_every_view(args: argparse.Namespace) -> int:
    """Every view for one text into --out, and an index.html that links them."""
    from gptlab.run import Run

    options = dataclass_from_args(AllOptions, args)
    claim_views(args, all_files())
    result = run_all(Run.open(args.model), options)
    index = result.write(args.out)
    left_out = result.data["left_out"]  # a recurrent model: the analyses that need attention
    note = f" (left out, needing attention: {', '.join(left_out)})" if left_out else ""
    print(f"wrote {index} and {len(result.data['views'])} views{note}")
    return 0
