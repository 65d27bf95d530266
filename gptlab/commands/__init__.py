"""CLI verbs: one module per verb, each with ``register(subparsers)``. See gptlab/cli.py.

This file holds the few argument helpers every verb shares: the ``--overwrite`` flag (see
gptlab/outputs.py for the rule it lifts) and the argparse ``type=`` checkers of gptlab.options, so a value that makes
no sense (a negative count, a seed torch cannot take) is refused while parsing, before any work.
(Flags built from an options dataclass: gptlab/commands/options.py.)
"""

from __future__ import annotations

import argparse

# the value checkers are the library's (options dataclasses name them); every verb imports them from here
from gptlab.options import (  # noqa: F401
    MAX_SEED,
    finite_float,
    float_list,
    fraction,
    int_at_least,
    int_list,
    nonnegative_float,
    nonnegative_int,
    open_unit_interval,
    positive_float,
    positive_int,
    seed_type,
    word_list,
)


def add_overwrite(parser: argparse.ArgumentParser, what: str = "the output", *aliases: str) -> None:
    """``--overwrite`` (and ``aliases``, e.g. ``--force``): without it, a verb never replaces files."""
    parser.add_argument(
        "--overwrite",
        *aliases,
        dest="overwrite",
        action="store_true",
        help=f"replace {what} if it already exists (without it, existing files are never touched)",
    )


def claim_views(args: argparse.Namespace, names: list[str]) -> None:
    """Before any work: ``args.out`` (when given) can take the files ``names`` without replacing
    any unless --overwrite, and is not the model's own run directory."""
    if getattr(args, "out", None):
        from gptlab.outputs import claim_files

        claim_files(args.out, names, overwrite=args.overwrite, sources=[getattr(args, "model", None)])


def claim_training_folder(args: argparse.Namespace, folder: str | None, what: str) -> None:
    """Before any work: a folder an audit trains new runs into (``--defence``, ``--runs``, ...)
    is empty or new (or --overwrite), writable, and not the audited run."""
    if folder:
        from gptlab.outputs import claim_folder

        claim_folder(folder, what=what, overwrite=args.overwrite, sources=[getattr(args, "model", None)])
