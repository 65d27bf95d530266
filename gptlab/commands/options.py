"""CLI flags built from an options dataclass, so each default and help text is written once.

A library options class (an audit's, an analysis's, a fine-tuning's) is the single source of
defaults; its CLI subcommand is built from it::

    @dataclass
    class MemorizationOptions:
        samples: int = option(2000, "random candidates when sampling", type=positive_int)
        repeats: list[int] = option((0, 1, 4, 16), "copies per canary", type=int_list)
        device: str = option("cpu", "cpu, cuda, mps or auto")

    add_dataclass_arguments(parser, MemorizationOptions)        # --samples, --repeats, --device
    options = dataclass_from_args(MemorizationOptions, args)

Field -> flag: ``snake_case`` becomes ``--snake-case`` (or ``metadata["flag"]``); the help text
comes from ``metadata["help"]`` with the default appended; ``metadata["type"]`` is the argparse
``type=`` checker (else the annotation's int/float/str); ``choices``, ``metavar``, ``nargs`` and
``action`` (e.g. "append" for a repeatable flag) pass through; ``metadata["required"]`` (a
``gptlab.options.required`` field, no default) makes the flag required. A ``bool`` field is a switch:
``--x`` when it defaults to False, ``--no-x`` when it defaults to True. Fields with
``metadata["cli"] = False`` (or named in ``exclude``) get no flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any

from gptlab.options import option  # noqa: F401  (the field helper lives with the library's options)


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _scalar_type(annotation: Any) -> Callable[[str], Any] | None:
    """int / float / str from an annotation like ``int``, ``int | None`` or ``Optional[float]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if candidate in (int, float, str):
            return candidate
    return None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, str) and value != value.strip():
        return repr(value)  # a default with outer spaces, as a user would type it: ' the'
    return str(value)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, exclude: Iterable[str] = ()) -> None:
    """One flag per field of dataclass ``cls`` (see the module docstring)."""
    skip = set(exclude)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.metadata.get("cli", True) or not field.init:
            continue
        meta, default, annotation = field.metadata, _default(field), hints.get(field.name)
        help_text = meta.get("help", "")
        kwargs: dict[str, Any] = {"dest": field.name}
        if annotation is bool:
            if default:
                flag = meta.get("flag") or "--no-" + field.name.replace("_", "-")
                parser.add_argument(flag, action="store_false", help=help_text, **kwargs)
            else:
                parser.add_argument(flag_name(field), action="store_true", help=help_text, **kwargs)
            continue
        kind = meta.get("type") or _scalar_type(annotation)
        if kind is not None:
            kwargs["type"] = kind
        for key in ("choices", "metavar", "nargs", "action"):
            if key in meta:
                kwargs[key] = meta[key]
        if meta.get("required"):
            kwargs["required"] = True
        elif default not in (None, "", [], ()) and help_text:
            help_text = f"{help_text} (default {_show(default)})"
        parser.add_argument(flag_name(field), default=default, help=help_text, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of ``cls`` from parsed ``args``: every field that has a flag, plus ``overrides``;
    fields without a flag keep their defaults."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.init and hasattr(args, f.name) and f.name not in overrides
    }
    return cls(**values, **overrides)
