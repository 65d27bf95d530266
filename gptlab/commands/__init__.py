"""CLI verbs: one module per verb, each with ``register(subparsers)``. See gptlab/cli.py.

This file holds the few argument helpers every verb shares: the ``--overwrite`` flag (see
gptlab/outputs.py for the rule it lifts), argparse ``type=`` checkers, so a value that makes
no sense (a negative count, a seed torch cannot take) is refused while parsing, before any work,
and `add_dataclass_arguments` / `dataclass_from_args`, which turn a library options dataclass
into flags and back (the dataclass's field defaults are then the only defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Collection
from types import UnionType
from typing import Any

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


# --- flags from an options dataclass -------------------------------------------------------------

# a field's metadata "check" -> the argparse type for its (int or float) annotation
CHECKS: dict[tuple[str, type], Callable[[str], Any]] = {
    ("positive", int): positive_int,
    ("positive", float): positive_float,
    ("nonnegative", int): nonnegative_int,
    ("nonnegative", float): nonnegative_float,
    ("seed", int): seed_type,
    ("probability", float): open_unit_interval,
    ("fraction", float): fraction,
}


def add_dataclass_arguments(
    parser,
    cls: type,
    exclude: Collection[str] = (),
    types: dict[str, Callable[[str], Any]] | None = None,
    prefix: str = "",
) -> None:
    """Add one flag per field of the dataclass ``cls`` to ``parser`` (a parser or an argument
    group), so that the library's options class is the single source of defaults and help.

    A field ``batch_size: int = 16`` becomes ``--batch-size`` (dest ``batch_size``), default 16,
    ``type=int``; a field without a default is a required flag. What the annotation cannot say
    comes from ``dataclasses.field(metadata={...})``:

    - ``help``, ``metavar``, ``choices``, ``nargs`` (lists and tuples take ``+`` otherwise): as in
      argparse;
    - ``check``: ``positive``, ``nonnegative``, ``seed``, ``probability`` or ``fraction``, which
      picks this module's checker for the field's int or float type (`CHECKS`);
    - ``flag``: the flag's name when it is not ``--field-name``;
    - ``group``: the title of an argument group the flag goes in (fields naming the same title
      share it; on a nested dataclass field, the group of all its flags);
    - ``no_help``: for a ``bool | None`` field, the help of its ``--no-`` flag.

    Booleans: ``False`` by default is ``--name`` (store_true); ``True`` by default is
    ``--no-name`` (store_false, its help describes the ``--no-`` flag); ``bool | None`` is the
    pair ``--name`` / ``--no-name``, mutually exclusive, None when neither is given. A field whose
    type is itself a dataclass adds that class's flags prefixed with the field's name
    (``lora: LoraOptions`` -> ``--lora-rank``). ``X | None`` fields default to None (flag not
    given). ``exclude`` names fields that get no flag (they keep their default);
    ``types`` maps a field name to its argparse type, for what no annotation says (a column that
    is a name or a position, ``str | int``). Read the values back with `dataclass_from_args`.
    """
    types = types or {}
    groups: dict[str, Any] = {}

    def container(metadata) -> Any:
        title = metadata.get("group")
        if not title:
            return parser
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        return groups[title]

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kind, optional = _unwrap_optional(hints[f.name])
        dest = prefix + f.name
        meta = f.metadata
        if dataclasses.is_dataclass(kind):
            add_dataclass_arguments(container(meta), kind, types=types, prefix=dest + "_")
            continue
        flag = meta.get("flag") or "--" + dest.replace("_", "-")
        default = _default(f)
        common = {"dest": dest, "help": meta.get("help")}
        if kind is bool:
            if optional:
                pair = container(meta).add_mutually_exclusive_group()
                pair.add_argument(flag, action="store_true", default=None, **common)
                pair.add_argument(
                    "--no-" + flag[2:], dest=dest, action="store_false", help=meta.get("no_help")
                )
            elif default is True:
                flag = meta.get("flag") or "--no-" + dest.replace("_", "-")
                container(meta).add_argument(flag, action="store_false", **common)
            else:
                container(meta).add_argument(flag, action="store_true", **common)
            continue
        options: dict[str, Any] = {**common}
        for key in ("metavar", "choices"):
            if key in meta:
                options[key] = meta[key]
        if typing.get_origin(kind) in (list, tuple):
            kind = typing.get_args(kind)[0]
            options["nargs"] = meta.get("nargs", "+")
            default = None if default is None else list(default)
        parse = types.get(f.name) or _argument_type(kind, meta.get("check"))
        if parse is not None:
            options["type"] = parse
        if default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = default
        container(meta).add_argument(flag, **options)


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = "", **overrides: Any):
    """The ``cls`` instance the flags of `add_dataclass_arguments` were parsed into: each field
    from ``args`` (a list back to a tuple where the field is a tuple; nested dataclasses rebuilt),
    fields without a flag keep their default, and ``overrides`` win over both."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            continue
        kind, _ = _unwrap_optional(hints[f.name])
        dest = prefix + f.name
        if dataclasses.is_dataclass(kind):
            values[f.name] = dataclass_from_args(kind, args, prefix=dest + "_")
        elif hasattr(args, dest):
            value = getattr(args, dest)
            if typing.get_origin(kind) is tuple and isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
    return cls(**values, **overrides)


def _unwrap_optional(hint) -> tuple[Any, bool]:
    """(the annotation without ``| None``, whether it had it); a union of several types stays
    whole (its flag is text unless ``types`` names a parser)."""
    if typing.get_origin(hint) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return (args[0] if len(args) == 1 else hint), True
    return hint, False


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _argument_type(kind, check: str | None) -> Callable[[str], Any] | None:
    if check is not None:
        if (check, kind) not in CHECKS:
            raise ValueError(f"no {check!r} check for a {kind} field")
        return CHECKS[check, kind]
    return kind if kind in (int, float) else None  # str (and what `types` did not name) stays text
