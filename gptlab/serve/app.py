"""The HTTP API: an OpenAI-compatible server for one run directory (FastAPI), and the playground.

`create_app(model_dir, ...)` loads the run (a language model, or a classifier run from
``gptlab finetune classify``), starts the `Engine` that owns it, and returns the ASGI app that
``gptlab serve`` hands to uvicorn. The official ``openai`` client works against it unchanged:

    GET  /                      the playground page (gptlab/serve/static/index.html), if installed
    GET  /healthz               {"status": "ok", "model", "kind", "stats"} (no API key needed)
    GET  /v1/models             the one model; its id is the run directory's name
    POST /v1/completions        prompt -> text; n, stop, seed, logprobs (0..5), stream (SSE)
    POST /v1/chat/completions   messages -> reply, in the run's chat template (gptlab.chat)
    POST /v1/classify           extension, classifier runs: {"input": str | [str]} -> labels
    POST /v1/analyze/attention  extension: {"text"} -> the attention page (gptlab analyze attention)

Decisions:

- Errors always have the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``:
  invalid JSON, unknown fields and out-of-range values are 400 (FastAPI's 422 is mapped to 400, the
  status OpenAI uses), a Host header the server does not answer to 400, a missing or wrong API key
  401, a body slower than ``read_timeout_s`` 408, a body over ``max_body_bytes`` 413, a full queue
  503, a generation past ``timeout_s`` 504. A request never gets a 500 for bad input, and
  never waits forever: every wait on the engine is bounded by the request's deadline.
- Limits: ``max_prompt_tokens`` (default: the model's context), ``max_tokens_cap`` on max_tokens,
  ``max_n`` choices, ``max_body_bytes`` (checked on Content-Length and on the bytes actually
  received, before FastAPI parses anything). A chat conversation longer than the context is cut
  from its oldest turns by `gptlab.chat.ChatSession` (as ``gptlab chat`` does), but the
  conversation as sent may not exceed ``max_prompt_tokens``.
- Security: the CLI binds 127.0.0.1 unless told otherwise; with an API key set, every /v1 route
  needs ``Authorization: Bearer KEY`` (compared in constant time; / and /healthz stay open so a
  health check or the page itself needs no secret); CORS is closed unless origins are listed; only
  the ``allowed_hosts`` names are answered (DNS rebinding, see gptlab.serve.guards, which also
  holds the connection limits ``gptlab serve`` runs uvicorn with).
  Weights are read with safetensors (gptlab.rundir), never unpickled.
- Streaming (``stream: true``): server-sent events, one ``data: {json}`` chunk per step with the
  text that became final, ending with ``data: [DONE]``. The response starts once the first token
  is out, so a request that fails or times out before that still gets a proper status code; an
  error after that arrives as a ``data: {"error": ...}`` event (the OpenAI client raises it). A
  client that disconnects, streaming or not, cancels its generation: the connection is checked
  every ``DISCONNECT_POLL_S`` while the request waits on the engine, and the engine stops before
  its next decode step.
- Chat: messages become a `ChatSession` history (each user message with the assistant reply
  after it; system messages are prepended to the next user message, since the Alpaca and chat
  templates have no system turn); the last message must be the user's. The reply stops at the
  template's next-turn markers as well as at the request's stop strings. A seed is used as is
  (``gptlab chat`` adds the turn number; an API request is one turn).
- Logprobs are the model's own distribution (temperature 1, unfiltered), see gptlab.serve.engine.
  Legacy ``text_offset`` counts characters from the start of the prompt, as OpenAI's does.
- The ``model`` field of a request is accepted and not checked: one server serves one model.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from gptlab.errors import GptlabError
from gptlab.serve.engine import Engine, EngineError, GenerationJob, Handle, timed_out
from gptlab.serve.guards import LOOPBACK_HOSTS, TrustedHosts
from gptlab.serve.schemas import (
    AttentionRequest,
    ChatCompletionRequest,
    ClassifyRequest,
    CompletionRequest,
)

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for legacy completions
DEFAULT_CHAT_TOKENS = 256
WAIT_GRACE_S = 5.0  # beyond a request's deadline, how long the web side waits for the engine to say so
DISCONNECT_POLL_S = 0.1  # how often (at most) a request checks that its client is still there
TINY_SAMPLING = 1e-30  # smaller temperatures / top_p break float32 sampling (see sampler below)
ATTENTION_SIGMAS = (0.1, 0.5, 1.0, 2.0)  # as `gptlab analyze attention` by default
PLAYGROUND = "index.html"


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


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    return "invalid_request_error" if status < 500 else "server_error"


# ----------------------------------------------------------------------------------- middleware


class _Guard:
    """API key, body size and body time, checked before FastAPI sees the request (a plain ASGI
    middleware, so streaming responses pass through untouched). The body is read here, at most
    ``max_body_bytes`` of it within ``read_timeout_s`` (else a 413 or 408, and the connection is
    closed: a client trickling its body would otherwise hold it open for ever), and replayed to
    the app; later ``receive`` calls (disconnect detection) go to the server as usual."""

    def __init__(
        self, app, *, api_key: str | None, max_body_bytes: int, read_timeout_s: float = 30.0
    ) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and scope["path"].startswith("/v1"):
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not secrets.compare_digest(token.encode(), self.api_key.encode()):
                message = "missing API key" if not token else "invalid API key"
                error = ApiError(
                    401,
                    f"{message}: send the header 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                    type="authentication_error",
                )
                return await error.response({"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_large = ApiError(
            413, f"request body over the limit of {self.max_body_bytes} bytes", code="request_too_large"
        )
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            declared = 0
        if declared > self.max_body_bytes:
            return await too_large.response({"Connection": "close"})(scope, receive, send)
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.read_timeout_s)
        except asyncio.TimeoutError:
            late = ApiError(
                408,
                f"the request body did not arrive within {self.read_timeout_s:g} s",
                code="request_timeout",
            )
            return await late.response({"Connection": "close"})(scope, receive, send)
        if body is None:  # the client went away while sending it
            return None
        if len(body) > self.max_body_bytes:
            return await too_large.response({"Connection": "close"})(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _read_body(self, receive) -> bytes | None:
        """The body (reading stops once it is over the limit), or None if the client disconnected."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_body_bytes or not message.get("more_body", False):
                return b"".join(chunks)


class _EventStream(StreamingResponse):
    """A server-sent-event response that calls ``on_close`` however it ends (finished, client gone,
    server error), so the engine stops generating for a client that is not reading any more."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


class _ClientWatch:
    """Is the client of a request still connected? Asks the server at most every
    ``DISCONNECT_POLL_S`` seconds (uvicorn notices a closed socket when asked to read)."""

    def __init__(self, request: Request) -> None:
        self.request, self.next_check = request, 0.0

    async def gone(self) -> bool:
        now = time.monotonic()
        if now < self.next_check:
            return False
        self.next_check = now + DISCONNECT_POLL_S
        return await self.request.is_disconnected()


def _sse(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


def _finite(x: float) -> float:
    """JSON has no -Infinity: a token with probability 0 (a float16 model) gets a very low number."""
    return x if math.isfinite(x) else -9999.0


# ------------------------------------------------------------------------------ output formats


class _CompletionFormat:
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
            "token_logprobs": [_finite(e["logprob"]) for e in entries],
            "top_logprobs": [{t: _finite(lp) for t, lp in e["top"]} for e in entries],
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

    def chunk(self, delta: dict) -> dict:
        return self._envelope(
            [
                {
                    "index": delta["index"],
                    "text": delta["text"],
                    "logprobs": self._logprobs(delta["entries"]),
                    "finish_reason": delta["finish_reason"],
                }
            ]
        )

    def whole(self, choices: list[dict], usage: dict) -> dict:
        out = self._envelope(
            [
                {
                    "index": c["index"],
                    "text": c["text"],
                    "logprobs": self._logprobs(c["entries"]),
                    "finish_reason": c["finish_reason"],
                }
                for c in choices
            ]
        )
        out["usage"] = usage
        return out

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._envelope([]), "usage": usage}


class _ChatFormat(_CompletionFormat):
    """OpenAI chat completions: ``message`` / ``delta`` per choice, logprobs as ``content`` entries."""

    object = "chat.completion"

    def __init__(self, model_id: str, logprobs: int | None) -> None:
        super().__init__(model_id, "", logprobs)
        self.id = f"chatcmpl-{uuid.uuid4().hex}"

    def _logprobs(self, entries: list[dict]) -> dict | None:
        if self.logprobs is None:
            return None

        def item(token: str, lp: float) -> dict:
            return {"token": token, "logprob": _finite(lp), "bytes": list(token.encode("utf-8"))}

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

    def whole(self, choices: list[dict], usage: dict) -> dict:
        out = self._envelope(
            [
                {
                    "index": c["index"],
                    "message": {"role": "assistant", "content": c["text"]},
                    "logprobs": self._logprobs(c["entries"]),
                    "finish_reason": c["finish_reason"],
                }
                for c in choices
            ]
        )
        out["usage"] = usage
        return out

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._envelope([], "chat.completion.chunk"), "usage": usage}


# ----------------------------------------------------------------------------------------- app


def _load(model_dir: str, device: str):
    """(kind, gpt, tokenizer, classifier or None) for a run directory."""
    from gptlab.run import Run

    run = Run.open(model_dir)
    if run.kind == "classifier":
        clf = run.load_classifier(device)
        return "classifier", clf.model.gpt, clf.tokenizer, clf
    return ("lm", *run.load(device), None)


def _playground() -> str | None:
    """The playground page shipped in the package, or None if it is not there."""
    try:
        page = resources.files("gptlab.serve").joinpath("static", PLAYGROUND)
        return page.read_text(encoding="utf-8") if page.is_file() else None
    except (FileNotFoundError, OSError):
        return None


def create_app(
    model_dir: str | Path,
    *,
    api_key: str | None = None,
    max_prompt_tokens: int | None = None,
    max_tokens_cap: int = 1024,
    max_n: int = 8,
    max_body_bytes: int = 1_000_000,
    timeout_s: float = 120.0,
    cors_origins: Sequence[str] = (),
    device: str = "cpu",
    max_concurrent: int = 8,
    max_queue: int = 64,
    max_attention_tokens: int = 128,
    allowed_hosts: Sequence[str] | None = None,
    read_timeout_s: float = 30.0,
) -> FastAPI:
    """The API for the run at ``model_dir`` (see the module docstring). ``max_prompt_tokens``
    defaults to the model's context (block_size); ``timeout_s`` bounds each request from its
    arrival (queueing included); ``max_concurrent`` generations are interleaved on the model's
    thread and up to ``max_queue`` more wait; ``max_attention_tokens`` caps /v1/analyze/attention
    (its page embeds layers x heads x tokens^2 weights). ``allowed_hosts``: the Host header names
    answered (default: the loopback names; ``["*"]``: any), see gptlab.serve.guards;
    ``read_timeout_s``: how long a request's body may take to arrive (then a 408)."""
    for name, value in (
        ("max_tokens_cap", max_tokens_cap),
        ("max_n", max_n),
        ("max_body_bytes", max_body_bytes),
        ("max_attention_tokens", max_attention_tokens),
        ("max_concurrent", max_concurrent),
        ("max_queue", max_queue),
    ):
        if value < 1:
            raise GptlabError(f"{name} must be >= 1, got {value}")
    for name, seconds in (("the timeout", timeout_s), ("the read timeout", read_timeout_s)):
        if not (math.isfinite(seconds) and seconds > 0):
            raise GptlabError(f"{name} must be a finite number of seconds > 0, got {seconds}")
    hosts = list(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    if not hosts:
        raise GptlabError("allowed_hosts is empty: give at least one host name, or '*' for any")
    if api_key is not None and not api_key.strip():
        raise GptlabError("the API key is empty: give a non-empty key, or none to serve without one")
    model_dir = str(model_dir)
    if not Path(model_dir).is_dir():
        raise GptlabError(f"model {model_dir} is not a folder: give a run directory (--model RUN)")
    kind, model, tokenizer, classifier = _load(model_dir, device)
    block_size = model.config.block_size
    prompt_cap = block_size if max_prompt_tokens is None else max_prompt_tokens
    if prompt_cap < 1:
        raise GptlabError(f"max_prompt_tokens must be >= 1, got {prompt_cap}")
    template = None
    if kind == "lm":
        from gptlab.run import Run

        template = Run.open(model_dir).template
    model_id = Path(model_dir).resolve().name
    created = int((Path(model_dir)).stat().st_mtime)
    engine = Engine(model, tokenizer, max_concurrent=max_concurrent, max_queue=max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(engine.close)

    app = FastAPI(title="gptlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.model_id = model_id
    app.state.kind = kind

    # ------------------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        kind_ = first.get("type", "")
        if kind_ == "json_invalid":
            detail = first.get("ctx", {}).get("error", "")
            message = f"the request body is not valid JSON ({detail})" if detail else "invalid JSON body"
        elif kind_ == "extra_forbidden":
            message = f"unknown field {param!r}"
        elif param is None:  # the body as a whole: missing, not an object, or not sent as JSON
            message = "the request body must be a JSON object, sent with Content-Type: application/json"
        else:
            message = (
                f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "invalid")
            )
        return ApiError(400, message, param=param, code=kind_ or None).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else "error"
        if e.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        error = ApiError(e.status_code, message, type=_error_type(e.status_code))
        return error.response(getattr(e, "headers", None))

    @app.exception_handler(GptlabError)
    async def _gptlab_error(request: Request, e: GptlabError):
        return ApiError(400, str(e)).response()

    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, e: EngineError):
        return ApiError.from_engine(e).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        return ApiError(500, f"internal error: {type(e).__name__}", type="server_error").response()

    # ---------------------------------------------------------------------------- helpers

    def need_lm() -> None:
        if kind != "lm":
            raise ApiError(
                400,
                f"{model_id} is a classifier run: it answers POST /v1/classify, not text generation",
                code="wrong_model_kind",
            )

    def check_limits(max_tokens: int, n: int) -> None:
        if max_tokens > max_tokens_cap:
            raise ApiError(
                400, f"max_tokens is {max_tokens}, over this server's cap of {max_tokens_cap}", "max_tokens"
            )
        if n > max_n:
            raise ApiError(400, f"n is {n}, over this server's cap of {max_n}", "n")

    def check_prompt(n_tokens: int, param: str) -> None:
        if n_tokens > prompt_cap:
            raise ApiError(
                400,
                f"the prompt is {n_tokens} tokens, over this server's limit of {prompt_cap}: shorten it",
                param,
                "context_length_exceeded",
            )

    def sampler(body):
        from gptlab.generate import Sampler

        # Sampling runs on float32 logits: below ~1e-38 a temperature's reciprocal overflows and a
        # top_p rounds to 0, and the step fails on NaNs. At 1e-30 both already mean "the most
        # likely token" (ties aside), so smaller values are raised to it rather than refused.
        temperature = max(body.temperature, TINY_SAMPLING) if body.temperature > 0 else 0.0
        return Sampler(
            temperature=temperature,
            top_k=body.top_k or None,
            top_p=max(body.top_p, TINY_SAMPLING) if body.top_p < 1.0 else None,
        )

    async def wait_event(handle: Handle, watch: _ClientWatch) -> dict:
        """The handle's next event, bounded by the request's deadline (plus a grace for the engine
        to report it). The connection is checked between events on a clock, not only when the
        engine is quiet: a generation emits an event every step, so a check made only after a
        quiet spell never came, and an abandoned request ran to max_tokens."""
        while True:
            if await watch.gone():
                handle.cancel()  # the engine frees the slot before its next step
                raise ApiError(499, "client closed the request")
            left = handle.job.deadline + WAIT_GRACE_S - time.monotonic()
            if left <= 0:
                handle.cancel()
                return {"type": "error", "error": timed_out(handle.job.timeout_s)}
            try:
                return await handle.next_event(min(left, DISCONNECT_POLL_S))
            except asyncio.TimeoutError:
                continue

    async def run_job(request: Request, job: GenerationJob, fmt, stream: bool, include_usage: bool):
        handle = engine.submit(job)
        watch = _ClientWatch(request)
        prompt_tokens = len(job.prompt_ids)

        def usage(completion_tokens: int) -> dict:
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }

        try:
            first = await wait_event(handle, watch)
        except BaseException:
            handle.cancel()
            raise
        if first["type"] == "error":
            handle.cancel()
            raise ApiError.from_engine(first["error"])

        if not stream:
            choices = [{"index": i, "text": "", "entries": [], "finish_reason": None} for i in range(job.n)]
            event = first
            try:
                while event["type"] == "delta":
                    for d in event["choices"]:
                        c = choices[d["index"]]
                        c["text"] += d["text"]
                        c["entries"] += d["entries"]
                        c["finish_reason"] = d["finish_reason"] or c["finish_reason"]
                    event = await wait_event(handle, watch)
            finally:
                handle.cancel()  # a no-op when it finished; stops it if this request failed
            if event["type"] == "error":
                raise ApiError.from_engine(event["error"])
            return JSONResponse(fmt.whole(choices, usage(event["completion_tokens"])))

        async def events() -> AsyncIterator[str]:
            for chunk in fmt.opening(job.n):
                yield _sse(chunk)
            event = first
            while True:
                if event["type"] == "error":
                    yield _sse(ApiError.from_engine(event["error"]).body())
                    return
                if event["type"] == "done":
                    if include_usage:
                        yield _sse(fmt.usage_chunk(usage(event["completion_tokens"])))
                    yield _sse("[DONE]")
                    return
                for d in event["choices"]:
                    yield _sse(fmt.chunk(d))
                try:
                    event = await wait_event(handle, watch)
                except ApiError:  # the client went away: nobody to tell
                    return

        return _EventStream(events(), handle.cancel)

    # ----------------------------------------------------------------------------- routes

    @app.get("/", include_in_schema=False)
    async def playground():
        page = _playground()
        if page is None:
            raise ApiError(
                404, "the playground page is not installed (gptlab/serve/static/index.html)", code="not_found"
            )
        return HTMLResponse(page, headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": model_id, "kind": kind, "stats": engine.stats}

    def model_card() -> dict:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "gptlab"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}")
    async def model_info(name: str):
        if name != model_id:
            raise ApiError(
                404, f"no model {name!r}: this server serves {model_id!r}", "model", "model_not_found"
            )
        return model_card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        from gptlab.generate import _encode_prompt

        need_lm()
        max_tokens = body.max_tokens or min(DEFAULT_COMPLETION_TOKENS, max_tokens_cap)
        check_limits(max_tokens, body.n)
        # same encoding as gptlab.generate.generate_text (so a seed gives the same text); off the
        # event loop, since a long prompt takes a while to tokenize
        ids = await run_in_threadpool(_encode_prompt, tokenizer, body.prompt)
        check_prompt(len(ids), "prompt")
        job = GenerationJob(
            ids,
            max_tokens,
            sampler(body),
            n=body.n,
            stops=body.stops,
            seed=body.seed,
            top_logprobs=body.logprobs,
            timeout_s=timeout_s,
        )
        fmt = _CompletionFormat(model_id, body.prompt, body.logprobs)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await run_job(request, job, fmt, body.stream, include_usage)

    def chat_prompt(messages, max_tokens: int) -> tuple[list[int], list[str]]:
        from gptlab.chat import STOP_MARKERS, ChatSession

        session = ChatSession(model, tokenizer, template, max_new_tokens=max_tokens)
        history: list[tuple[str, str]] = []
        user: list[str] = []  # user (and system) text since the last assistant message
        for m in messages:
            if m.role == "assistant":
                history.append(("\n\n".join(user), m.text))
                user = []
            else:
                user.append(m.text)
        if messages[-1].role != "user":
            raise ApiError(400, "the last message must be from the user", "messages")
        session.history = history
        sent = sum(len(tokenizer.encode(m.text)) for m in messages)
        check_prompt(sent, "messages")
        return session.prompt_ids("\n\n".join(user)), list(STOP_MARKERS[template])

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        need_lm()
        max_tokens = body.max_completion_tokens or body.max_tokens or min(DEFAULT_CHAT_TOKENS, max_tokens_cap)
        check_limits(max_tokens, body.n)
        if body.top_logprobs is not None and not body.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        ids, markers = await run_in_threadpool(chat_prompt, body.messages, max_tokens)
        top = (body.top_logprobs or 0) if body.logprobs else None
        job = GenerationJob(
            ids,
            max_tokens,
            sampler(body),
            n=body.n,
            stops=[*markers, *body.stops],
            seed=body.seed,
            top_logprobs=top,
            timeout_s=timeout_s,
        )
        fmt = _ChatFormat(model_id, top)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await run_job(request, job, fmt, body.stream, include_usage)

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest):
        if classifier is None:
            raise ApiError(
                400,
                f"{model_id} is a language model, not a classifier run (make one with `gptlab finetune classify`)",
                code="wrong_model_kind",
            )
        texts = body.texts
        results = await engine.call(lambda: classifier.classify(texts), timeout_s)
        data = [
            {
                "index": i,
                "label": r["label"],
                "probability": r["probability"],
                "probabilities": r["probabilities"],
            }
            for i, r in enumerate(results)
        ]
        return {"object": "list", "model": model_id, "data": data}

    @app.post("/v1/analyze/attention")
    async def attention(body: AttentionRequest):
        from gptlab.commands.analyze import attention_analysis, attention_html

        ids = await run_in_threadpool(tokenizer.encode, body.text)
        limit = min(max_attention_tokens, block_size)
        if not ids:
            raise ApiError(400, "the text encodes to no tokens", "text")
        if len(ids) > limit:
            raise ApiError(
                400, f"the text is {len(ids)} tokens; the attention view takes at most {limit}", "text"
            )

        def page() -> str:
            out, attns = attention_analysis(model, tokenizer, ids, list(ATTENTION_SIGMAS))
            return attention_html(out, attns)

        html = await engine.call(page, timeout_s)
        return HTMLResponse(html)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    # outermost last: CORS must answer preflight requests before the API key is asked for, and
    # nothing at all is answered to a Host name the server does not go by (DNS rebinding)
    app.add_middleware(_Guard, api_key=api_key, max_body_bytes=max_body_bytes, read_timeout_s=read_timeout_s)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TrustedHosts, allowed_hosts=hosts)
    return app
