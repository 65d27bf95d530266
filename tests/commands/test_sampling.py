"""gptlab.commands.sampling: ``gptlab generate`` and ``gptlab chat`` share one set of sampling
flags, whose defaults are their Sampler's fields."""

from __future__ import annotations

from gptlab.chat import DEFAULT_SAMPLER
from gptlab.cli import build_parser
from gptlab.commands.sampling import sampler_from_args
from gptlab.generate import Sampler


def test_generate_and_chat_share_the_sampling_flags_with_their_samplers_defaults():
    for verb, expected in (("generate", Sampler()), ("chat", DEFAULT_SAMPLER)):
        args = build_parser(verb).parse_args([verb, "--model", "RUN"])
        assert sampler_from_args(args) == expected, verb
        flags = ["--temperature", "0.5", "--top-k", "3", "--top-p", "0.9", "--repetition-penalty", "1.2"]
        args = build_parser(verb).parse_args([verb, "--model", "RUN", *flags])
        assert sampler_from_args(args) == Sampler(0.5, 3, 0.9, 1.2), verb
