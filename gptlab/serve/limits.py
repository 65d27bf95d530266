"""`ServeLimits`: every limit the server enforces, with its default, in one place.

`gptlab.serve.app.create_app` takes one, `gptlab serve` reads its flag defaults from its fields,
and `gptlab.serve.guards` reads the uvicorn-level ones (header deadline, connection limit). No
FastAPI here, so the CLI can read the defaults without the ``serve`` extra installed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import GptlabError


@dataclass(frozen=True)
class ServeLimits:
    """Request and connection limits; GptlabError on construction if one is out of range."""

    max_prompt_tokens: int | None = None  # longest prompt in tokens; None: the model's context
    max_tokens_cap: int = 1024  # cap on a request's max_tokens
    max_n: int = 8  # cap on a request's n (choices)
    max_body_bytes: int = 1_000_000  # largest request body (413 beyond it)
    timeout_s: float = 120.0  # a request from arrival to its last token, queueing included (504)
    max_concurrent: int = 8  # generations decoded together (one batched forward per step)
    max_queue: int = 64  # generations waiting for a slot (503 beyond it)
    max_attention_tokens: int = 128  # /v1/analyze/attention embeds layers x heads x tokens^2 weights
    read_timeout_s: float = 30.0  # a request's headers, then its body, must arrive within this (408)
    max_connections: int = 128  # open connections at once (uvicorn answers 503 beyond it)
    prefill_chunk_tokens: int = 256  # prompt positions prefilled per step, between decode steps
    batching: bool = True  # False: the older interleaving, one request's step at a time

    def __post_init__(self) -> None:
        for name in (
            "max_tokens_cap",
            "max_n",
            "max_body_bytes",
            "max_attention_tokens",
            "max_concurrent",
            "max_queue",
            "max_connections",
            "prefill_chunk_tokens",
        ):
            value = getattr(self, name)
            if value < 1:
                raise GptlabError(f"{name} must be >= 1, got {value}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise GptlabError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        for name, seconds in (("the timeout", self.timeout_s), ("the read timeout", self.read_timeout_s)):
            if not (math.isfinite(seconds) and seconds > 0):
                raise GptlabError(f"{name} must be a finite number of seconds > 0, got {seconds}")

    def prompt_cap(self, block_size: int) -> int:
        """The longest prompt accepted for a model with this context."""
        return block_size if self.max_prompt_tokens is None else self.max_prompt_tokens
