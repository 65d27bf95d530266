"""The sampling flags of ``gptlab generate`` and ``gptlab chat``: one definition, defaults read from
the `Sampler` a command starts from (so a default is written once, in gptlab.generate or the
command's own default sampler)."""

from __future__ import annotations

import argparse

from gptlab.commands import nonnegative_float, nonnegative_int
from gptlab.generate import Sampler


def add_sampling_arguments(parser: argparse.ArgumentParser, defaults: Sampler | None = None) -> None:
    """--temperature, --top-k, --top-p and --repetition-penalty, defaulting to the fields of
    ``defaults`` (None: a plain `Sampler()`)."""
    defaults = defaults or Sampler()
    parser.add_argument(
        "--temperature",
        type=nonnegative_float,
        default=defaults.temperature,
        help="0 is greedy (default: %(default)s)",
    )
    parser.add_argument(
        "--top-k",
        type=nonnegative_int,
        default=defaults.top_k,
        help="sample only among the K most likely tokens",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=defaults.top_p,
        help="sample only among the most likely tokens with mass P, in (0, 1]",
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=defaults.repetition_penalty,
        help="> 1 makes tokens already in the text less likely (default: %(default)s)",
    )


def sampler_from_args(args: argparse.Namespace) -> Sampler:
    """The Sampler the flags of `add_sampling_arguments` describe (GptlabError on invalid values)."""
    return Sampler(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
