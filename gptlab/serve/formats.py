"""The OpenAI wire formats the server answers in: the error body (`ApiError`), legacy and chat
completions (whole, and as server-sent-event chunks), and the SSE framing itself."""

from __future__ import annotations

import json
import math
import time
import uuid

from fastapi.responses import JSONResponse

from gptlab.serve.engine import EngineError


class ApiError(Exception):
    """An error answered with the OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    @classmethod
    def from_engine(cls, e: EngineError) -> ApiError:
        return cls(e.status, e.message, code=e.code, type=e.type)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    return "invalid_request_error" if status < 500 else "server_error"


def sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def finite_logprob(x: float) -> float:
    """JSON has no -Infinity: a token with probability 0 (a float16 model) gets a very low number."""
    return x if math.isfinite(x) else -9999.0


class CompletionFormat:
    """OpenAI legacy completions: ``text`` per choice, logprobs as parallel lists."""

    object = "text_completion"

    def __init__(self, model_id: str, prompt: str, logprobs: int | None) -> None:
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model_id, self.prompt_chars, self.logprobs = model_id, len(prompt), logprobs

    def _logprobs(self, entries: list[dict]) -> dict | None:
        if self.logprobs is None:
            return None
        return {
            "tokens": [e["token"] for e in entries],
            "token_logprobs": [finite_logprob(e["logprob"]) for e in entries],
            "top_logprobs": [{t: finite_logprob(lp) for t, lp in e["top"]} for e in entries],
            "text_offset": [self.prompt_chars + e["offset"] for e in entries],
        }

    def _envelope(self, choices: list[dict], object: str | None = None) -> dict:
        return {
            "id": self.id,
            "object": object or self.object,
            "created": self.created,
            "model": self.model_id,
            "choices": choices,
        }

    def opening(self, n: int) -> list[dict]:
        return []

    def _choice(self, c: dict) -> dict:
        """One choice of a whole answer (and, here, of a chunk) from its text, entries and reason."""
        return {
            "index": c["index"],
            "text": c["text"],
            "logprobs": self._logprobs(c["entries"]),
            "finish_reason": c["finish_reason"],
        }

    def chunk(self, delta: dict) -> dict:
        return self._envelope([self._choice(delta)])

    def whole(self, choices: list[dict], usage: dict) -> dict:
        return {**self._envelope([self._choice(c) for c in choices]), "usage": usage}

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._envelope([]), "usage": usage}


class ChatFormat(CompletionFormat):
    """OpenAI chat completions: ``message`` / ``delta`` per choice, logprobs as ``content`` entries."""

    object = "chat.completion"

    def __init__(self, model_id: str, logprobs: int | None) -> None:
        super().__init__(model_id, "", logprobs)
        self.id = f"chatcmpl-{uuid.uuid4().hex}"

    def _logprobs(self, entries: list[dict]) -> dict | None:
        if self.logprobs is None:
            return None

        def item(token: str, lp: float) -> dict:
            return {"token": token, "logprob": finite_logprob(lp), "bytes": list(token.encode("utf-8"))}

        return {
            "content": [
                {**item(e["token"], e["logprob"]), "top_logprobs": [item(t, lp) for t, lp in e["top"]]}
                for e in entries
            ]
        }

    def opening(self, n: int) -> list[dict]:
        return [
            self._envelope(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                "chat.completion.chunk",
            )
            for i in range(n)
        ]

    def chunk(self, delta: dict) -> dict:
        content = {"content": delta["text"]} if delta["text"] else {}
        return self._envelope(
            [
                {
                    "index": delta["index"],
                    "delta": content,
                    "logprobs": self._logprobs(delta["entries"]) if delta["entries"] else None,
                    "finish_reason": delta["finish_reason"],
                }
            ],
            "chat.completion.chunk",
        )

    def _choice(self, c: dict) -> dict:
        return {
            "index": c["index"],
            "message": {"role": "assistant", "content": c["text"]},
            "logprobs": self._logprobs(c["entries"]),
            "finish_reason": c["finish_reason"],
        }

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._envelope([], "chat.completion.chunk"), "usage": usage}
