"""ServeLimits is the one source of the server's limit defaults: ``gptlab serve``'s flags default
to its fields, the flags build one, and uvicorn's header deadline and connection limit agree."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from gptlab.commands import serve as serve_cmd
from gptlab.errors import GptlabError
from gptlab.serve.limits import ServeLimits


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    return parser


def test_every_limit_has_a_flag_and_each_flag_defaults_to_its_field():
    defaults = ServeLimits()
    args = serve_parser().parse_args(["serve", "--model", "RUN"])
    flagged = set(serve_cmd.LIMIT_FLAGS.values())
    # max_attention_tokens is an API-only limit (the attention page), not a flag; batching is a switch
    assert flagged == {f.name for f in dataclasses.fields(ServeLimits)} - {"max_attention_tokens", "batching"}
    for flag, field in serve_cmd.LIMIT_FLAGS.items():
        assert getattr(args, flag) == getattr(defaults, field), flag
    assert serve_cmd.limits_from_args(args) == defaults


def test_flags_set_their_fields():
    args = serve_parser().parse_args(
        ["serve", "--model", "RUN", "--max-tokens", "7", "--timeout", "2.5", "--max-connections", "3"]
    )
    limits = serve_cmd.limits_from_args(args)
    assert (limits.max_tokens_cap, limits.timeout_s, limits.max_connections) == (7, 2.5, 3)
    assert limits.batching
    no_batching = serve_parser().parse_args(
        ["serve", "--model", "RUN", "--no-batching", "--prefill-chunk-tokens", "9"]
    )
    limits = serve_cmd.limits_from_args(no_batching)
    assert (limits.batching, limits.prefill_chunk_tokens) == (False, 9)


def test_uvicorn_defaults_come_from_the_limits():
    pytest.importorskip("uvicorn")
    from gptlab.serve.guards import HeaderDeadlineProtocol, uvicorn_options

    options = uvicorn_options()
    assert options["limit_concurrency"] == ServeLimits().max_connections
    assert options["http"].header_timeout_s == HeaderDeadlineProtocol.header_timeout_s
    assert HeaderDeadlineProtocol.header_timeout_s == ServeLimits().read_timeout_s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens_cap": 0}, "max_tokens_cap"),
        ({"max_n": 0}, "max_n"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"max_prompt_tokens": 0}, "max_prompt_tokens"),
        ({"max_connections": 0}, "max_connections"),
        ({"prefill_chunk_tokens": 0}, "prefill_chunk_tokens"),
        ({"timeout_s": 0.0}, "the timeout"),
        ({"read_timeout_s": float("nan")}, "the read timeout"),
    ],
)
def test_out_of_range_limits_are_refused(kwargs, message):
    with pytest.raises(GptlabError, match=message):
        ServeLimits(**kwargs)
