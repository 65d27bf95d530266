"""``gptlab audit bias --model RUN``: counterfactual bias probes (gptlab/audit/bias.py).

Scores each probe pair (built-in occupations x pronouns and first names x occupations, and/or a
JSON file of pairs) by the log-probability gap between the stereotypical and the counterfactual
member, with a bootstrap interval and a sign-flip permutation test. With ``--cda`` it also trains
the run's recipe (RUN/config.toml, or ``--config``) on the counterfactually augmented corpus into
OUT/cda and reports the gap before and after. Heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.commands import (
    add_overwrite,
    claim_views,
    nonnegative_float,
    open_unit_interval,
    positive_int,
    seed_type,
)

HELP = "counterfactual bias probes (log-prob gap, permutation test), optionally CDA before/after"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="RUN", help="a gptlab run directory (the LM to probe)"
    )
    parser.add_argument(
        "--probes",
        metavar="FILE",
        help='JSON list of pairs: {"context", "completions": [stereotype, other]} or {"contexts": [a, b], '
        '"completion"} (see gptlab.audit.bias.load_pairs)',
    )
    parser.add_argument(
        "--builtin",
        choices=("all", "occupations", "names", "none"),
        help="built-in probes to include (default: all, or none when --probes is given)",
    )
    parser.add_argument(
        "--n-perm", type=positive_int, default=10000, help="random sign flips above 16 pairs (default 10000)"
    )
    parser.add_argument(
        "--n-boot", type=positive_int, default=1000, help="bootstrap resamples of the mean gap (default 1000)"
    )
    parser.add_argument(
        "--gap-threshold", type=nonnegative_float, default=0.1, help="mean gap (nats) above which it fails"
    )
    parser.add_argument(
        "--alpha", type=open_unit_interval, default=0.05, help="p-value below which the gap is significant"
    )
    parser.add_argument("--device", default="cpu")
    cda = parser.add_argument_group("counterfactual data augmentation (retrains a model: needs --out)")
    cda.add_argument("--cda", action="store_true", help="train on the augmented corpus and compare")
    cda.add_argument("--cda-mode", choices=("append", "substitute"), default="append")
    cda.add_argument("--config", metavar="TOML", help="training recipe (default: RUN/config.toml)")
    cda.add_argument(
        "--corpus", nargs="+", metavar="FILE", help="raw training text (default: the recipe's data.input)"
    )
    cda.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe key for the retraining (e.g. train.max_steps=500); repeatable",
    )  # fmt: skip
    parser.add_argument("--seed", type=seed_type, default=0)
    parser.add_argument(
        "--out", metavar="DIR", help="write bias.json and the plots here (default: print only)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_overwrite(parser, "DIR/bias.json")


def _pairs(args):
    from gptlab.audit.bias import builtin_pairs, load_pairs
    from gptlab.errors import GptlabError

    kind = args.builtin or ("none" if args.probes else "all")
    pairs = [] if kind == "none" else builtin_pairs(kind)
    if args.probes:
        pairs += load_pairs(args.probes)
    if not pairs:
        raise GptlabError("no probes: give --probes FILE or a --builtin set other than none")
    return pairs


def compute(args: argparse.Namespace):
    """The audit's AuditResult for parsed arguments (``run`` prints and saves it)."""
    from gptlab.errors import GptlabError

    pairs = _pairs(args)
    if args.cda:
        from gptlab.audit.bias import cda_experiment
        from gptlab.config import load_config

        if not args.out:
            raise GptlabError("--cda trains a new model: give --out DIR to hold it")
        recipe = args.config or str(Path(args.model) / "config.toml")
        if not Path(recipe).is_file():
            raise GptlabError(f"no training recipe at {recipe}: give --config TOML (the baseline's config)")
        config = load_config(recipe, args.overrides)
        result = cda_experiment(
            config, args.out, pairs, baseline=args.model, mode=args.cda_mode, corpus=args.corpus,
            n_perm=args.n_perm, n_boot=args.n_boot, seed=args.seed, gap_threshold=args.gap_threshold,
            alpha=args.alpha,
        )  # fmt: skip
    else:
        from gptlab.audit.bias import bias_audit
        from gptlab.rundir import load_model

        model, tokenizer = load_model(args.model, device=args.device)
        result = bias_audit(
            model, tokenizer, pairs, args.n_perm, args.n_boot, args.seed, args.gap_threshold, args.alpha
        )
    result.details["model"] = str(args.model)
    return result


def run(args: argparse.Namespace) -> int:
    from gptlab.commands.audit import emit

    claim_views(args, ["bias.json"])  # before the work, not after
    return emit(compute(args), args)
