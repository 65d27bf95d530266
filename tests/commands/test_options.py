"""gptlab.commands.options: CLI flags built from an options dataclass (the one source of defaults)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import pytest

from gptlab.commands import positive_int
from gptlab.commands.options import add_dataclass_arguments, dataclass_from_args, option


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


@dataclass
class Example:
    samples: int = option(2000, "random candidates", type=positive_int)
    rate: float = option(0.5, "a rate")
    name: str | None = option(None, "a name", metavar="NAME")
    repeats: list[int] = option([0, 1, 4], "copies per canary", type=int_list)
    quick: bool = option(False, "fewer samples")
    plots: bool = option(True, "draw plots")
    mode: str = option("a", "which mode", choices=("a", "b"))
    hidden: int = option(7, "not on the CLI", cli=False)


def parser_for(cls=Example, **kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_arguments(p, cls, **kwargs)
    return p


def test_no_flags_gives_the_dataclass_defaults():
    assert dataclass_from_args(Example, parser_for().parse_args([])) == Example()


def test_flags_parse_with_their_types_and_switches():
    args = parser_for().parse_args(
        [
            "--samples",
            "5",
            "--rate",
            "0.25",
            "--name",
            "x",
            "--repeats",
            "2,3",
            "--quick",
            "--no-plots",
            "--mode",
            "b",
        ]
    )
    assert dataclass_from_args(Example, args) == Example(5, 0.25, "x", [2, 3], True, False, "b")


def test_checkers_and_choices_refuse_bad_values():
    for argv in (["--samples", "0"], ["--mode", "c"], ["--rate", "x"]):
        with pytest.raises(argparse.ArgumentError):
            parser_for().parse_args(argv)


def test_help_text_carries_the_default_and_excluded_fields_have_no_flag():
    text = parser_for(exclude=["rate"]).format_help()
    assert "random candidates (default 2000)" in text
    assert "copies per canary (default 0,1,4)" in text
    assert "--rate" not in text and "--hidden" not in text
    args = parser_for(exclude=["rate"]).parse_args([])
    assert dataclass_from_args(Example, args, rate=0.75).rate == 0.75


def test_list_defaults_are_not_shared_between_instances():
    a, b = Example(), Example()
    a.repeats.append(9)
    assert b.repeats == [0, 1, 4]
    assert {f.name for f in fields(Example)} >= {"samples", "hidden"}
