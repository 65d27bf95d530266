"""CLI verbs: one module per verb, each with ``register(subparsers)``. See gptlab/cli.py.

This file holds the few argument helpers every verb shares: the ``--overwrite`` flag (see
gptlab/outputs.py for the rule it lifts) and argparse ``type=`` checkers, so a value that makes
no sense (a negative count, a seed torch cannot take) is refused while parsing, before any work.
(Flags built from an options dataclass: gptlab/commands/options.py.)
"""

from __future__ import annotations

import argparse
import math

# torch.manual_seed overflows past 2**63 - 1; verbs add offsets (sample i uses seed + i), so leave room
MAX_SEED = 2**62


def add_overwrite(parser: argparse.ArgumentParser, what: str = "the output") -> None:
    parser.add_argument(
        "--overwrite",
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


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (e.g. 2 folds of cross-validation)."""

    def check(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    check.__name__ = f"integer >= {minimum}"
    return check


def seed_type(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be between 0 and 2**62, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def open_unit_interval(text: str) -> float:
    """A probability strictly between 0 and 1 (a significance level, a rate)."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def finite_float(text: str) -> float:
    """Any finite number: what every ``type=float`` flag takes (gptlab.cli registers it for float)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def fraction(text: str) -> float:
    """A rate or share between 0 and 1, both included (a threshold on a success rate)."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value
