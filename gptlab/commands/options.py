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
comes from ``metadata["help"]`` with the default appended (unless the help speaks of a default
already); ``metadata["type"]`` is the argparse ``type=`` checker (else the annotation's
int/float/str); ``choices``, ``metavar``, ``nargs`` and ``action`` (e.g. "append" for a
repeatable flag) pass through; ``metadata["required"]`` (a ``gptlab.options.required`` field)
makes the flag required. A ``bool`` field is a switch: ``--x`` when it defaults to False,
``--no-x`` when it defaults to True. Fields with ``metadata["cli"] = False`` (or named in
``exclude``) get no flag.

Library classes make their fields with gptlab.options (``option``, ``required`` and the
checkers: ``type=positive_int``).
Also: a field without a default is a required flag; a ``tuple`` field given with ``nargs``
comes back a tuple; ``bool | None`` is the pair ``--x`` / ``--no-x`` (mutually exclusive,
``metadata["no_help"]`` helps the second; None when neither is given); a field whose type is a
dataclass adds that class's flags prefixed with the field's name (``lora: LoraOptions`` ->
``--lora-rank``, dest ``lora_rank``); ``metadata["group"]`` puts flags in a titled argument
group (on a dataclass field: all of its flags); ``types={field: parser}`` gives a parser that no
annotation can say (a ``str | int`` column: a name or a position).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any

from gptlab.options import option  # noqa: F401  (the field helper lives with the library's options)


def flag_name(field: dataclasses.Field, prefix: str = "") -> str:
    return field.metadata.get("flag") or "--" + (prefix + field.name).replace("_", "-")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _scalar_type(annotation: Any) -> Callable[[str], Any] | None:
    """int / float / str from an annotation like ``int``, ``int | None``, ``Optional[float]`` or
    ``tuple[int, ...]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if candidate in (int, float, str):
            return candidate
    return None


def _argument_type(meta, annotation: Any) -> Callable[[str], Any] | None:
    return meta.get("type") or _scalar_type(annotation)


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """(``X`` of ``X | None``, True), or (the annotation, False)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _sequence_kind(annotation: Any) -> type | None:
    """list or tuple for ``list[...]``, ``tuple[...]`` (or either ``| None``), else None."""
    origin = typing.get_origin(_without_none(annotation)[0])
    return origin if origin in (list, tuple) else None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, str) and value != value.strip():
        return repr(value)  # a default with outer spaces, as a user would type it: ' the'
    return str(value)


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    exclude: Iterable[str] = (),
    types: dict[str, Callable[[str], Any]] | None = None,
    prefix: str = "",
) -> None:
    """One flag per field of dataclass ``cls`` (see the module docstring); ``prefix`` is for the
    flags of a nested dataclass."""
    skip, types, groups = set(exclude), types or {}, {}

    def container(meta) -> Any:
        title = meta.get("group")
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        return groups[title] if title else parser

    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.metadata.get("cli", True) or not field.init:
            continue
        meta, default, annotation = field.metadata, _default(field), hints.get(field.name)
        dest = prefix + field.name
        if dataclasses.is_dataclass(annotation):
            add_dataclass_arguments(container(meta), annotation, types=types, prefix=dest + "_")
            continue
        help_text = meta.get("help", "")
        kwargs: dict[str, Any] = {"dest": dest}
        target = container(meta)
        if annotation is bool:
            if default:
                flag = meta.get("flag") or "--no-" + dest.replace("_", "-")
                target.add_argument(flag, action="store_false", help=help_text, **kwargs)
            else:
                target.add_argument(flag_name(field, prefix), action="store_true", help=help_text, **kwargs)
            continue
        if _without_none(annotation) == (bool, True):
            pair = target.add_mutually_exclusive_group()
            flag = flag_name(field, prefix)
            pair.add_argument(flag, action="store_true", default=None, help=help_text, **kwargs)
            pair.add_argument("--no-" + flag[2:], action="store_false", help=meta.get("no_help"), **kwargs)
            continue
        kind = types.get(field.name) or _argument_type(meta, annotation)
        if kind is not None:
            kwargs["type"] = kind
        for key in ("choices", "metavar", "nargs", "action"):
            if key in meta:
                kwargs[key] = meta[key]
        if meta.get("required") or _has_no_default(field):
            kwargs["required"] = True
        elif default not in (None, "", [], ()) and help_text and "default" not in help_text:  # not said twice
            help_text = f"{help_text} (default {_show(default)})"
        target.add_argument(flag_name(field, prefix), default=default, help=help_text, **kwargs)


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = "", **overrides: Any) -> Any:
    """An instance of ``cls`` from parsed ``args``: every field that has a flag (a list turned
    back into a tuple where the field is one; nested dataclasses rebuilt from their prefixed
    flags), plus ``overrides``; fields without a flag keep their defaults."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        dest = prefix + f.name
        if not f.init or f.name in overrides:
            continue
        if dataclasses.is_dataclass(hints.get(f.name)):
            values[f.name] = dataclass_from_args(hints[f.name], args, prefix=dest + "_")
        elif hasattr(args, dest):
            value = getattr(args, dest)
            if _sequence_kind(hints.get(f.name)) is tuple and isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
    return cls(**values, **overrides)


def _has_no_default(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
