"""``gptlab eval baseline summary|bow``: the floors the task recipes print beside their models
(lead-1 and random-sentence summaries scored with ROUGE by eval generation's scorer; a
bag-of-words logistic regression for labelled sentences); a thin wrapper over
gptlab.eval.baselines. The eval verb (gptlab/commands/eval.py) calls :func:`register_baseline`."""

from __future__ import annotations

import argparse
import json

from gptlab.commands import seed_type


def register_baseline(metrics: argparse._SubParsersAction) -> None:
    parser = metrics.add_parser(
        "baseline",
        help="task floors: lead-1 / random-sentence summaries (ROUGE), bag-of-words classifier (accuracy)",
        description=(
            "Score the baselines a task model has to beat, with the code that scores the model: 'summary' "
            "(lead-1 and a seeded random sentence of each document, ROUGE-1/2/L F as `eval generation` "
            "computes them) or 'bow' (a unigram+bigram logistic regression fitted on --train, accuracy on "
            "--data; needs scikit-learn)."
        ),
    )
    kinds = parser.add_subparsers(dest="baseline", metavar="KIND", required=True)

    summary = kinds.add_parser("summary", help="lead-1 and random-sentence summaries, ROUGE-1/2/L")
    summary.add_argument("--data", required=True, metavar="FILE", help="JSONL (or JSON list) of objects")
    summary.add_argument("--input-field", default="document", metavar="NAME", help="(default document)")
    summary.add_argument(
        "--target-field",
        default="summary",
        metavar="NAME",
        help="the reference summary, or a list of them (default summary)",
    )
    summary.add_argument("--seed", type=seed_type, default=0, help="seed of the random sentences")
    summary.add_argument("--json", action="store_true", help="print the scores as JSON")
    summary.set_defaults(func=run_summary)

    from gptlab.commands.finetune import column

    bow = kinds.add_parser("bow", help="bag-of-words logistic regression: fit on --train, accuracy on --data")
    bow.add_argument("--train", required=True, metavar="FILE", help="labelled training file")
    bow.add_argument("--data", required=True, metavar="FILE", help="labelled evaluation file")
    bow.add_argument("--text-field", "--text-column", type=column, default="text", help="(default text)")
    bow.add_argument("--label-field", "--label-column", type=column, default="label", help="(default label)")
    bow.add_argument("--json", action="store_true", help="print the result as JSON")
    bow.set_defaults(func=run_bow)


def run_summary(args: argparse.Namespace) -> int:
    from gptlab.data.pairs import load_pairs
    from gptlab.eval.baselines import summary_baselines

    pairs = load_pairs(args.data, args.input_field, args.target_field, multiple_references=True)
    scores = summary_baselines([p.input for p in pairs], [p.references for p in pairs], seed=args.seed)
    if args.json:
        print(json.dumps({"data": args.data, "seed": args.seed, **scores}, indent=2))
        return 0
    print(f"{args.data}: {len(pairs)} documents, {args.input_field} -> {args.target_field}")
    print(f"{'baseline':<10} {'rouge1':>7} {'rouge2':>7} {'rougeL':>7}")
    for name, s in scores.items():
        print(f"{name:<10} {s['rouge1']:7.4f} {s['rouge2']:7.4f} {s['rougeL']:7.4f}")
    return 0


def run_bow(args: argparse.Namespace) -> int:
    from gptlab.data.tasks import load_classification
    from gptlab.errors import GptlabError
    from gptlab.eval.baselines import bag_of_words_accuracy

    train = load_classification(args.train, args.text_field, args.label_field)
    test = load_classification(args.data, args.text_field, args.label_field)
    unknown = sorted(set(test.label_names) - set(train.label_names))
    if unknown:
        raise GptlabError(f"{args.data} has labels the training file lacks: {', '.join(unknown)}")
    # both files index their own sorted label names: compare by name
    test_labels = [train.label_names.index(test.label_names[y]) for y in test.labels]
    result = bag_of_words_accuracy(train.texts, train.labels, test.texts, test_labels)
    if args.json:
        print(json.dumps({"train": args.train, "data": args.data, **result.to_dict()}, indent=2))
        return 0
    print(
        f"bag-of-words logistic regression: accuracy {result.accuracy:.4f} on {result.n_test} texts of "
        f"{args.data} (fitted on {result.n_train} texts, {result.vocabulary:,} uni/bigrams)"
    )
    return 0
