"""gptlab.commands.options: CLI flags built from an options dataclass (the one source of defaults):
types, checks, switches, lists, nested dataclasses, groups; and the finetune verbs' flags, which are
built this way, keep their defaults and checks."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

import pytest

from gptlab.cli import ArgumentParser, UsageError, build_parser
from gptlab.commands import nonnegative_int, open_unit_interval, positive_int
from gptlab.commands.options import add_dataclass_arguments, dataclass_from_args, option
from gptlab.finetune.classify import ClassifyOptions
from gptlab.finetune.common import LoraOptions
from gptlab.finetune.instruct import InstructOptions


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


@dataclass
class Inner:
    rank: int = field(default=0, metadata={"help": "the rank", "type": nonnegative_int, "metavar": "R"})
    names: tuple[str, ...] = field(default=("a", "b"), metadata={"nargs": "+"})


@dataclass
class Options:
    path: str = field(metadata={"help": "where"})  # no default: a required flag
    count: int = field(default=3, metadata={"type": positive_int})
    rate: float | None = field(default=None, metadata={"type": open_unit_interval, "group": "extra"})
    mode: str = field(default="fast", metadata={"choices": ("fast", "slow")})
    verbose: bool = False
    colour: bool = field(default=True, metadata={"help": "plain output"})
    header: bool | None = field(default=None, metadata={"help": "has one", "no_help": "has none"})
    keep: bool = field(default=True, metadata={"flag": "--drop"})
    shots: tuple[int, ...] = field(default=(0, 4), metadata={"nargs": "*"})
    labels: list[str] | None = field(default=None, metadata={"nargs": "+"})
    column: str | int = "text"
    inner: Inner = field(default_factory=Inner, metadata={"group": "inner things"})
    hidden: float = 0.5


def gptlab_parser(**kwargs) -> ArgumentParser:
    p = ArgumentParser(prog="t")  # gptlab's parser: errors raise UsageError, floats must be finite
    add_dataclass_arguments(p, Options, **kwargs)
    return p


def parse(*argv: str, **kwargs) -> Options:
    return dataclass_from_args(Options, gptlab_parser(**kwargs).parse_args(["--path", "p", *argv]))


def test_defaults_come_from_the_fields():
    assert parse() == Options(path="p")


def test_each_kind_of_field_parses():
    options = parse(
        *("--count", "5", "--rate", "0.5", "--mode", "slow", "--verbose", "--no-colour", "--no-header"),
        *("--drop", "--shots", "--labels", "x", "y", "--inner-rank", "2", "--inner-names", "q"),
    )
    assert options == Options(
        path="p",
        count=5,
        rate=0.5,
        mode="slow",
        verbose=True,
        colour=False,
        header=False,
        keep=False,
        shots=(),
        labels=["x", "y"],
        inner=Inner(rank=2, names=("q",)),
    )
    assert parse("--header").header is True


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --path is required
        ["--path", "p", "--count", "0"],
        ["--path", "p", "--rate", "1"],
        ["--path", "p", "--mode", "medium"],
        ["--path", "p", "--inner-rank", "-1"],
        ["--path", "p", "--header", "--no-header"],
        ["--path", "p", "--hidden", "1"],  # excluded below
    ],
)
def test_bad_values_are_refused_while_parsing(argv):
    with pytest.raises(UsageError):
        gptlab_parser(exclude=("hidden",)).parse_args(argv)


def test_exclude_types_and_overrides():
    p = gptlab_parser(exclude=("hidden",), types={"column": lambda s: int(s) if s.isdigit() else s})
    assert dataclass_from_args(Options, p.parse_args(["--path", "p", "--column", "2"])).column == 2
    options = dataclass_from_args(Options, p.parse_args(["--path", "p"]), hidden=0.25, count=9)
    assert (options.hidden, options.count) == (0.25, 9)


def test_help_and_groups_come_from_the_metadata():
    text = gptlab_parser().format_help()
    for piece in ("where", "plain output", "has none", "inner things:", "extra:", "--inner-rank R", "--drop"):
        assert piece in text, piece


def _task_parser(task: str):
    parser = build_parser("finetune")
    return parser, ["finetune", task, "--model", "m", "--data", "d", "--out", "o"]


@pytest.mark.parametrize(("task", "cls"), [("classify", ClassifyOptions), ("instruct", InstructOptions)])
def test_finetune_flags_default_to_the_options_class(task, cls):
    parser, argv = _task_parser(task)
    options = dataclass_from_args(cls, parser.parse_args(argv))
    assert options == cls(model="m", data="d", out="o")
    assert options.lora == LoraOptions()


@pytest.mark.parametrize(
    "flags",
    [
        ["--epochs", "0"],
        ["--lr", "nan"],
        ["--seed", "-1"],
        ["--grad-clip", "-1"],
        ["--lora-rank", "-1"],
        ["--warmup-fraction", "0.2"],  # not a flag
    ],
)
def test_finetune_flags_keep_their_checks(flags):
    parser, argv = _task_parser("instruct")
    with pytest.raises(UsageError):
        parser.parse_args(argv + flags)


def test_classify_specific_flags():
    parser, argv = _task_parser("classify")
    args = parser.parse_args(argv + ["--text-column", "1", "--dp-delta", "0.001", "--prompting-shots"])
    options = dataclass_from_args(ClassifyOptions, args)
    assert (options.text_column, options.dp_delta, options.prompting_shots) == (1, 0.001, ())
    with pytest.raises(UsageError):
        parser.parse_args(argv + ["--dp-delta", "1"])
