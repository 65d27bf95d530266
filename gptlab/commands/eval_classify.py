"""``gptlab eval classify --model RUN --data FILE``: accuracy, per-class precision/recall/F1, the
confusion matrix and the error analysis (gptlab.eval.error_analysis) of a classifier run on a
labelled file (same formats as training: TSV, CSV, JSONL, JSON; in JSON the columns are field
names, ``--text-field sentence --label-field label``, and an integer label such as SST-2's 0/1
matches the label name "0"/"1")."""

from __future__ import annotations

import argparse
import json


def register_classify(metrics) -> None:
    parser = metrics.add_parser(
        "classify",
        help="accuracy, per-class precision/recall/F1 and confusion matrix of a classifier run",
        description=(
            "Evaluate a classifier run (from `gptlab finetune classify`) on a labelled TSV/CSV/JSONL/JSON "
            "file. Columns default to the ones the run was trained with; labels must be the run's labels."
        ),
    )
    from gptlab.commands.finetune import column

    parser.add_argument("--model", required=True, metavar="RUN", help="a classifier run directory")
    parser.add_argument("--data", required=True, metavar="FILE", help="labelled file")
    # --text-field / --label-field: the same flags under the names JSON data calls them by
    parser.add_argument(
        "--text-column", "--text-field", type=column, help="name or 0-based position (default: as trained)"
    )
    parser.add_argument(
        "--label-column", "--label-field", type=column, help="name or 0-based position (default: as trained)"
    )
    header = parser.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None)
    header.add_argument("--no-header", dest="header", action="store_false")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from gptlab.eval.error_analysis import format_error_analysis
    from gptlab.finetune.classify import evaluate_file_with_errors

    metrics, errors = evaluate_file_with_errors(
        args.model, args.data, args.text_column, args.label_column, args.header, device=args.device
    )
    if args.json:
        document = {"model": args.model, "data": args.data} | metrics.to_dict() | {"error_analysis": errors}
        print(json.dumps(document, indent=2))
    else:
        print(f"{args.data} with {args.model}")
        print(metrics.format())
        print(format_error_analysis(errors))
    return 0
