"""``gptlab eval bleu`` and ``gptlab eval rouge``: score generated text against references.

Inputs, either:
- ``--hyp FILE --ref FILE [--ref FILE ...]``: plain UTF-8 text, one segment per line; each
  ``--ref`` file is one reference set with a line for every hypothesis line; or
- ``--responses FILE.json``: a JSON list of objects with ``"generated"`` (a string) and
  ``"reference"`` (a string, or a list of strings for several references), as written by
  instruction fine-tuning evaluation.

The eval verb (gptlab/commands/eval.py) calls :func:`register_text_metrics` on its sub-parsers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.commands import open_unit_interval, positive_float, positive_int, seed_type
from gptlab.errors import GptlabError
from gptlab.eval.bleu import SMOOTH_DEFAULTS, TOKENIZERS
from gptlab.eval.rouge import DEFAULT_CONFIDENCE, ROUGE_TYPES
from gptlab.io import read_json

INPUT_HELP = "--hyp FILE --ref FILE [--ref FILE ...] (one segment per line), or --responses FILE.json"


def register_text_metrics(eval_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bleu`` and ``rouge`` sub-verbs to ``gptlab eval``."""
    bleu = eval_subparsers.add_parser(
        "bleu",
        help="corpus BLEU of generations against references (same numbers as sacrebleu)",
        description="Corpus BLEU (0-100), computed like sacrebleu. Inputs: " + INPUT_HELP,
    )
    _add_input_arguments(bleu)
    bleu.add_argument(
        "--tokenize",
        choices=TOKENIZERS,
        default="13a",
        help="13a: the WMT/mteval tokenizer; none: split on spaces",
    )
    bleu.add_argument(
        "--smooth", choices=list(SMOOTH_DEFAULTS), default="exp", help="smoothing of zero precisions"
    )
    bleu.add_argument(
        "--smooth-value", type=positive_float, help="value for floor (default 0.1) or add-k (default 1)"
    )
    bleu.add_argument("--lowercase", action="store_true", help="lowercase before scoring")
    bleu.add_argument("--json", action="store_true", help="print machine-readable JSON")
    bleu.set_defaults(func=run_bleu)

    rouge = eval_subparsers.add_parser(
        "rouge",
        help="mean ROUGE-1/2/L/Lsum of generations against references (same numbers as rouge-score)",
        description="Mean ROUGE precision/recall/F over pairs, computed like Google's rouge-score. Inputs: "
        + INPUT_HELP,
    )
    _add_input_arguments(rouge)
    rouge.add_argument(
        "--types", nargs="+", default=list(ROUGE_TYPES), help="rouge1..rouge9, rougeL, rougeLsum"
    )
    rouge.add_argument("--stemmer", action="store_true", help="Porter-stem tokens longer than 3 characters")
    rouge.add_argument(
        "--bootstrap", type=positive_int, default=0, metavar="N", help="bootstrap samples for a CI (0: none)"
    )
    rouge.add_argument(
        "--confidence", type=open_unit_interval, default=DEFAULT_CONFIDENCE, help="CI level for --bootstrap"
    )
    rouge.add_argument("--seed", type=seed_type, default=0, help="seed of the bootstrap resampling")
    rouge.add_argument("--json", action="store_true", help="print machine-readable JSON")
    rouge.set_defaults(func=run_rouge)


def run_bleu(args: argparse.Namespace) -> int:
    from gptlab.eval.bleu import corpus_bleu

    hypotheses, references = load_pairs(args.hyp, args.ref, args.responses)
    n_refs = max(map(len, references))
    # corpus_bleu takes reference sets (sacrebleu's layout); None where a segment has fewer refs
    reference_sets = [[refs[k] if k < len(refs) else None for refs in references] for k in range(n_refs)]
    score = corpus_bleu(
        hypotheses,
        reference_sets,
        smooth_method=args.smooth,
        smooth_value=args.smooth_value,
        tokenize=args.tokenize,
        lowercase=args.lowercase,
    )
    settings = {"segments": len(hypotheses), "references": n_refs, "tokenize": args.tokenize}
    settings |= {"smooth_method": args.smooth, "lowercase": args.lowercase}
    if args.json:
        print(json.dumps({"metric": "bleu", **settings, **score.to_dict()}, indent=2))
    else:
        print(score)
        print(", ".join(f"{k}={v}" for k, v in settings.items()))
    return 0


def run_rouge(args: argparse.Namespace) -> int:
    from gptlab.eval.rouge import corpus_rouge

    hypotheses, references = load_pairs(args.hyp, args.ref, args.responses)
    try:
        scores = corpus_rouge(
            hypotheses,
            references,
            types=args.types,
            use_stemmer=args.stemmer,
            bootstrap_samples=args.bootstrap,
            confidence=args.confidence,
            seed=args.seed,
        )
    except ValueError as e:  # bad --types, --bootstrap or --confidence
        raise GptlabError(str(e)) from None
    if args.json:
        report = {"metric": "rouge", "pairs": len(hypotheses), "use_stemmer": args.stemmer}
        report |= {"bootstrap_samples": args.bootstrap, "confidence": args.confidence}
        report["scores"] = {t: agg.to_dict() for t, agg in scores.items()}
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(hypotheses)} pairs, stemmer {'on' if args.stemmer else 'off'}")
    for t, agg in scores.items():
        line = f"{t:<10} P={agg.mean.precision:.4f} R={agg.mean.recall:.4f} F={agg.mean.fmeasure:.4f}"
        if agg.low is not None and agg.high is not None:
            line += f"  {args.confidence:.0%} CI of F: {agg.low.fmeasure:.4f}-{agg.high.fmeasure:.4f}"
        print(line)
    return 0


def load_pairs(
    hyp: str | None, refs: list[str] | None, responses: str | None
) -> tuple[list[str], list[list[str]]]:
    """(hypotheses, references per hypothesis) from line files or a responses JSON file."""
    if responses is not None:
        if hyp is not None or refs:
            raise GptlabError("give either --responses or --hyp/--ref, not both")
        return _load_responses(Path(responses))
    if hyp is None or not refs:
        raise GptlabError("give --hyp FILE with at least one --ref FILE, or --responses FILE.json")
    hypotheses = _read_lines(Path(hyp), "hypothesis file")
    if not hypotheses:
        raise GptlabError(f"hypothesis file {hyp} is empty, expected one hypothesis per line")
    reference_sets = []
    for ref in refs:
        lines = _read_lines(Path(ref), "reference file")
        if len(lines) != len(hypotheses):
            raise GptlabError(
                f"reference file {ref} has {len(lines)} lines but hypothesis file {hyp} has "
                f"{len(hypotheses)}: expected one reference line per hypothesis line"
            )
        reference_sets.append(lines)
    return hypotheses, [list(segment_refs) for segment_refs in zip(*reference_sets)]


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hyp", metavar="FILE", help="generated text, one segment per line")
    parser.add_argument(
        "--ref", metavar="FILE", action="append", help="reference text, one line per --hyp line (repeatable)"
    )
    parser.add_argument(
        "--responses", metavar="FILE", help='JSON list of {"generated": ..., "reference": ...} objects'
    )


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GptlabError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise GptlabError(f"{what} {path} is a directory, expected a text file") from None
    except UnicodeDecodeError as e:
        raise GptlabError(f"{what} {path} is not UTF-8 text (byte {e.start})") from None
    lines = text.split("\n")
    if lines[-1] == "":  # the newline that ends the last line does not start another
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _load_responses(path: Path) -> tuple[list[str], list[list[str]]]:
    data = read_json(path, "responses file")
    if not isinstance(data, list) or not data:
        raise GptlabError(f"responses file {path}: expected a non-empty JSON list of objects")
    hypotheses, references = [], []
    for i, item in enumerate(data):
        where = f"responses file {path}, item {i}"
        if not isinstance(item, dict):
            raise GptlabError(f"{where}: expected an object with 'generated' and 'reference'")
        generated, reference = item.get("generated"), item.get("reference")
        if not isinstance(generated, str):
            raise GptlabError(f"{where}: field 'generated' must be a string, got {type(generated).__name__}")
        if isinstance(reference, str):
            reference = [reference]
        if not (isinstance(reference, list) and reference and all(isinstance(r, str) for r in reference)):
            raise GptlabError(f"{where}: field 'reference' must be a string or a non-empty list of strings")
        hypotheses.append(generated)
        references.append(reference)
    return hypotheses, references
