"""Request bodies of the API, as pydantic models: what a client may send, and in which ranges.

Every model forbids unknown fields (``extra="forbid"``): a misspelt parameter (``temprature``) or
an OpenAI option this server does not implement (``best_of``, ``echo``, ``logit_bias``) is a 400
naming the field, rather than being silently ignored and giving the client a result it did not ask
for. ``presence_penalty`` and ``frequency_penalty`` are accepted at their no-op value 0, which many
client libraries send by default; any other value is a 400. Ranges follow the OpenAI API where it has one (temperature 0..2, top_p in (0, 1], at most
4 stop strings, logprobs 0..5); NaN and infinities are refused. Limits that depend on the server's
configuration (max_tokens, n, prompt length) are checked by the app, which knows them.

Extensions beyond OpenAI: ``top_k`` (0 = off) on both generation endpoints, `ClassifyRequest` and
`AttentionRequest`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP = 4  # as in the OpenAI API
MAX_STOP_CHARS = 256
MAX_TOP_LOGPROBS = 5  # legacy completions allow 0..5; chat allows more, but 5 keeps responses small
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit value
MAX_CLASSIFY_INPUTS = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _stops(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else list(value)
    if len(stops) > MAX_STOP:
        raise ValueError(f"at most {MAX_STOP} stop strings, got {len(stops)}")
    if any(not s for s in stops):
        raise ValueError("stop strings must not be empty")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ValueError(f"stop strings must be at most {MAX_STOP_CHARS} characters")
    return stops


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """Parameters shared by /v1/completions and /v1/chat/completions."""

    model: str | None = None  # accepted for compatibility; there is one model per server
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)  # extension: 0 = no top-k filtering
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: float = 0.0  # accepted only at 0 (no-op): see _no_penalty
    frequency_penalty: float = 0.0

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("penalties are not implemented by this server: send 0 or leave it out")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value):
        _stops(value)
        return value

    @property
    def stops(self) -> list[str]:
        return _stops(self.stop)


class CompletionRequest(_Sampling):
    """POST /v1/completions (OpenAI legacy completions)."""

    prompt: str
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class ClassifyRequest(_Strict):
    """POST /v1/classify (extension, classifier runs): one text or a list of them."""

    model: str | None = None
    input: str | list[str] = Field(...)

    @field_validator("input")
    @classmethod
    def _check_input(cls, value):
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("give at least one text")
        if len(texts) > MAX_CLASSIFY_INPUTS:
            raise ValueError(f"at most {MAX_CLASSIFY_INPUTS} texts per request, got {len(texts)}")
        if any(not t.strip() for t in texts):
            raise ValueError("texts must not be empty")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class AttentionRequest(_Strict):
    """POST /v1/analyze/attention (extension): the attention page of a text."""

    model: str | None = None
    text: str = Field(min_length=1)
