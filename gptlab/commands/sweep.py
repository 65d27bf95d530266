"""``gptlab sweep``: a grid of training runs with a results table and plots (gptlab.train.sweep);
``gptlab sweep scaling``: a ladder of model sizes or token budgets and its power-law fit
(gptlab.train.scaling)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    from gptlab.options import positive_int

    p = subparsers.add_parser(
        "sweep",
        help="train a grid of configs x seeds: train/val loss and gap per point, table and plots",
        description=(
            "Train one run per grid point and seed into OUT/runs/<point>, then print the final train "
            "and val loss and their gap per point (mean ± std over the seeds), and write OUT/sweep.json, "
            "OUT/gap.png and OUT/curves.png. Run the same command again to resume: finished runs are "
            "skipped, an unfinished one resumes from its checkpoint (or starts over without one). OUT "
            'holding another sweep is refused. Example: --config tiny-cpu --grid "train.data_fraction=0.1,'
            '0.3,1.0" --grid "model.dropout=0,0.1,0.2" --seeds 2 --out sweeps/overfit. '
            "`gptlab sweep scaling` trains a ladder instead (model sizes --n-params/--sizes at one --tokens "
            "budget, or one size at several budgets) and fits L = A x^-alpha + B: --data FILE --n-params "
            "0.1M,0.3M,1M --tokens 2M --out DIR"
        ),
    )
    p.add_argument(
        "mode",
        nargs="?",
        choices=("grid", "scaling"),
        default="grid",
        help="grid (default): the product of --grid axes; scaling: a ladder and its power-law fit",
    )
    p.add_argument("--config", metavar="FILE|NAME", help="the base config: a TOML file or a shipped name")
    p.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        help="one axis of the grid (repeat for more): a config key and its comma-separated values",
    )
    p.add_argument(
        "--seeds", type=positive_int, default=1, help="runs per point, train.seed + 0, 1, ... (default 1)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every run (repeatable), e.g. --set train.max_steps=500",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    add_scaling_arguments(p)
    p.set_defaults(func=run)


def add_scaling_arguments(p) -> None:
    from gptlab.options import nonnegative_int

    g = p.add_argument_group("scaling mode (gptlab sweep scaling; gptlab.train.scaling documents the rules)")
    g.add_argument("--data", metavar="FILE", help="the training text (same as data.input=[FILE])")
    g.add_argument("--n-params", metavar="N1,N2,...", help="target non-embedding sizes, e.g. 0.1M,0.3M,1M,3M")
    g.add_argument("--sizes", metavar="NAME,...", help="named sizes: micro (30k), tiny (0.1M), small (0.3M), "
                   "medium (1M), large (3M), xlarge (10M)")  # fmt: skip
    g.add_argument(
        "--tokens", metavar="D1,D2,...", help="training tokens per run (several: a data ladder, L(D))"
    )
    g.add_argument(
        "--bootstrap",
        type=nonnegative_int,
        default=1000,
        metavar="B",
        help="bootstrap resamples (default 1000)",
    )


def run_scaling_mode(args: argparse.Namespace) -> int:
    from gptlab.errors import GptlabError
    from gptlab.train import signals
    from gptlab.train.scaling import SIZES, ScalingSpec, format_scaling, parse_counts, run_scaling

    if args.grid:
        raise GptlabError(
            "--grid belongs to a grid sweep; `gptlab sweep scaling` takes --n-params/--sizes and --tokens"
        )
    if bool(args.n_params) == bool(args.sizes):
        raise GptlabError("give the ladder's sizes with --n-params or --sizes (one of them)")
    if args.sizes:
        unknown = [s for s in args.sizes.split(",") if s not in SIZES]
        if unknown:
            raise GptlabError(
                f"unknown size {unknown[0]!r}; known: {', '.join(f'{k} ({v:,})' for k, v in SIZES.items())}"
            )
        n_params = [SIZES[s] for s in args.sizes.split(",")]
    else:
        n_params = parse_counts(args.n_params)
    if not args.tokens:
        raise GptlabError("give the training budget with --tokens (several values: a data ladder)")
    spec = ScalingSpec(
        args.config,
        [],
        args.seeds,
        list(args.overrides),
        args.data or "",
        n_params,
        parse_counts(args.tokens),
    )
    result = run_scaling(spec, args.out, bootstrap=args.bootstrap)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_scaling(result))
        print(f"sweep: {result.out_dir / 'sweep.json'}; plot: {result.plot}")
    return signals.exit_code(result.stopped or "")


def run(args: argparse.Namespace) -> int:
    from gptlab.errors import GptlabError
    from gptlab.train import signals

    if args.mode == "scaling":
        return run_scaling_mode(args)
    if not args.grid:
        raise GptlabError(
            'a grid sweep needs at least one --grid "section.key=v1,v2" (or: gptlab sweep scaling ...)'
        )
    scaling_flags = [f for f in ("data", "n_params", "sizes", "tokens") if getattr(args, f)]
    if scaling_flags:
        raise GptlabError(f"--{scaling_flags[0].replace('_', '-')} belongs to `gptlab sweep scaling`")
    from gptlab.train.sweep import SweepSpec, format_table, parse_grid, run_sweep

    spec = SweepSpec(args.config, [parse_grid(g) for g in args.grid], args.seeds, list(args.overrides))
    result = run_sweep(spec, args.out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_table(result.points))
        print(f"sweep: {result.out_dir / 'sweep.json'}; plots: {', '.join(str(p) for p in result.plots)}")
    return signals.exit_code(result.stopped or "")  # 130 after Ctrl-C, 143 after SIGTERM
