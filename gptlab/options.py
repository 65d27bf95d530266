"""Options dataclasses whose fields carry their own help and value checks, for the library and the CLI.

A library options class (an audit's, an analysis's, a fine-tuning's) is the single source of its
defaults; ``gptlab.commands.options.add_dataclass_arguments`` builds the CLI flags from it::

    @dataclass
    class MemorizationOptions:
        samples: int = option(2000, "random candidates when sampling", type=positive_int)

The checkers below take the text of a value and return it parsed, or raise
``argparse.ArgumentTypeError`` saying what was expected: the CLI refuses a value that makes no
sense (a negative count, a seed torch cannot take) while parsing, before any work. They live
here, not in gptlab.commands, because the library's options name them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from typing import Any

# torch.manual_seed overflows past 2**63 - 1; verbs add offsets (sample i uses seed + i), so leave room
MAX_SEED = 2**62


def option(default: Any = dataclasses.MISSING, help: str | None = None, **metadata: Any) -> Any:
    """A dataclass field with its CLI help (and optional ``type`` or ``check``, ``choices``,
    ``metavar``, ``nargs``, ``flag``, ``group``, ``cli``) in its metadata. Without a default the
    field (and its flag) is required. A list/dict/set default is copied per instance."""
    meta = {"help": help, **metadata}
    if isinstance(default, (list, dict, set)):
        frozen = list(default) if isinstance(default, list) else default
        return dataclasses.field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def required(help: str, **metadata: Any) -> Any:
    """A dataclass field without a default (declare it before the fields that have one): its
    flag must be given, e.g. the ``--text`` of an analysis."""
    return dataclasses.field(metadata={"help": help, "required": True, **metadata})


# --- value checkers (argparse ``type=``) ---------------------------------------------------------------


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (e.g. 2 folds of cross-validation)."""

    def check(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    check.__name__ = f"integer >= {minimum}"
    return check


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def template_text(text: str) -> str:
    """A prompt template typed on a command line: ``\\n``, ``\\t`` and ``\\\\`` become a newline,
    a tab and a backslash (a shell's double quotes keep them as two characters)."""
    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], text)


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


def unit_interval_from_zero(text: str) -> float:
    """A probability in [0, 1): 0 turns the thing off (label smoothing, dropout)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
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


def int_list(text: str) -> list[int]:
    """Comma-separated integers, e.g. ``0,1,4,16``."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    """Comma-separated numbers, e.g. ``0.02,0.05``."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def word_list(text: str) -> list[str]:
    """Comma-separated words, blanks dropped, e.g. ``swap,insert``."""
    return [x.strip() for x in text.split(",") if x.strip()]


def column(text: str) -> str | int:
    """A column of a labelled file: a 0-based position if it is a number, else a name."""
    return int(text) if text.isdigit() else text
