"""``gptlab sweep``: a grid of training runs with a results table and plots (gptlab.train.sweep)."""

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
            '0.3,1.0" --grid "model.dropout=0,0.1,0.2" --seeds 2 --out sweeps/overfit'
        ),
    )
    p.add_argument("--config", metavar="FILE|NAME", help="the base config: a TOML file or a shipped name")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gptlab.train import signals
    from gptlab.train.sweep import SweepSpec, format_table, parse_grid, run_sweep

    spec = SweepSpec(args.config, [parse_grid(g) for g in args.grid], args.seeds, list(args.overrides))
    result = run_sweep(spec, args.out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_table(result.points))
        print(f"sweep: {result.out_dir / 'sweep.json'}; plots: {', '.join(str(p) for p in result.plots)}")
    return signals.exit_code(result.stopped or "")  # 130 after Ctrl-C, 143 after SIGTERM
