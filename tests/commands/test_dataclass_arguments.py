"""gptlab.commands.add_dataclass_arguments / dataclass_from_args: flags built from an options
dataclass (defaults, checks, booleans, lists, nested dataclasses, groups) and read back; and the
finetune verbs' flags, which are built this way, keep their defaults and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gptlab.cli import ArgumentParser, UsageError, build_parser
from gptlab.commands import add_dataclass_arguments, dataclass_from_args
from gptlab.finetune.classify import ClassifyOptions
from gptlab.finetune.common import LoraOptions
from gptlab.finetune.instruct import InstructOptions


@dataclass
class Inner:
    rank: int = field(default=0, metadata={"help": "the rank", "check": "nonnegative", "metavar": "R"})
    names: tuple[str, ...] = ("a", "b")


@dataclass
class Options:
    path: str = field(metadata={"help": "where"})  # no default: a required flag
    count: int = field(default=3, metadata={"check": "positive"})
    rate: float | None = field(default=None, metadata={"check": "probability", "group": "extra"})
    mode: str = field(default="fast", metadata={"choices": ("fast", "slow")})
    verbose: bool = False
    colour: bool = field(default=True, metadata={"help": "plain output"})
    header: bool | None = field(default=None, metadata={"help": "has one", "no_help": "has none"})
    keep: bool = field(default=True, metadata={"flag": "--drop"})
    shots: tuple[int, ...] = field(default=(0, 4), metadata={"nargs": "*"})
    labels: list[str] | None = None
    column: str | int = "text"
    inner: Inner = field(default_factory=Inner, metadata={"group": "inner things"})
    hidden: float = 0.5


def parser(**kwargs) -> ArgumentParser:
    p = ArgumentParser(prog="t")  # gptlab's parser: errors raise UsageError, floats must be finite
    add_dataclass_arguments(p, Options, **kwargs)
    return p


def parse(*argv: str, **kwargs) -> Options:
    return dataclass_from_args(Options, parser(**kwargs).parse_args(["--path", "p", *argv]))


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
        parser(exclude=("hidden",)).parse_args(argv)


def test_exclude_types_and_overrides():
    p = parser(exclude=("hidden",), types={"column": lambda s: int(s) if s.isdigit() else s})
    assert dataclass_from_args(Options, p.parse_args(["--path", "p", "--column", "2"])).column == 2
    options = dataclass_from_args(Options, p.parse_args(["--path", "p"]), hidden=0.25, count=9)
    assert (options.hidden, options.count) == (0.25, 9)


def test_help_and_groups_come_from_the_metadata():
    text = parser().format_help()
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
