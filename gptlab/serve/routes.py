"""The server's routes and error handlers: module-level functions over ``request.app.state``
(the `ServeState` that `gptlab.serve.app.create_app` builds), registered by `register`.

Generation requests become a `GenerationJob` on the engine; `run_job` waits on its events (bounded
by the request's deadline, watching for the client going away) and answers them whole or as
server-sent events, in the format of the route (`gptlab.serve.formats`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptlab.errors import GptlabError
from gptlab.generate import Sampler, encode_prompt
from gptlab.serve.engine import EngineError, GenerationJob, Handle, timed_out
from gptlab.serve.formats import ApiError, ChatFormat, CompletionFormat, error_type, sse
from gptlab.serve.schemas import ChatCompletionRequest, ClassifyRequest, CompletionRequest

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for legacy completions
DEFAULT_CHAT_TOKENS = 256
WAIT_GRACE_S = 5.0  # beyond a request's deadline, how long the web side waits for the engine to say so
DISCONNECT_POLL_S = 0.1  # how often (at most) a request checks that its client is still there
TINY_SAMPLING = 1e-30  # smaller temperatures / top_p break float32 sampling (see `sampler_for`)
PLAYGROUND = "index.html"


# ------------------------------------------------------------------------------- error handlers


async def api_error(request: Request, e: ApiError):
    return e.response()


async def invalid_request(request: Request, e: RequestValidationError):
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
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "invalid")
    return ApiError(400, message, param=param, code=kind_ or None).response()


async def http_error(request: Request, e: StarletteHTTPException):
    message = e.detail if isinstance(e.detail, str) else "error"
    if e.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    error = ApiError(e.status_code, message, type=error_type(e.status_code))
    return error.response(getattr(e, "headers", None))


async def gptlab_error(request: Request, e: GptlabError):
    return ApiError(400, str(e)).response()


async def engine_error(request: Request, e: EngineError):
    return ApiError.from_engine(e).response()


async def unexpected_error(request: Request, e: Exception):
    return ApiError(500, f"internal error: {type(e).__name__}", type="server_error").response()


# -------------------------------------------------------------------------------------- helpers


def need_lm(state) -> None:
    if state.kind != "lm":
        raise ApiError(
            400,
            f"{state.model_id} is a classifier run: it answers POST /v1/classify, not text generation",
            code="wrong_model_kind",
        )


def check_limits(state, max_tokens: int, n: int) -> None:
    cap, max_n = state.limits.max_tokens_cap, state.limits.max_n
    if max_tokens > cap:
        raise ApiError(400, f"max_tokens is {max_tokens}, over this server's cap of {cap}", "max_tokens")
    if n > max_n:
        raise ApiError(400, f"n is {n}, over this server's cap of {max_n}", "n")


def check_prompt(state, n_tokens: int, param: str) -> None:
    if n_tokens > state.prompt_cap:
        raise ApiError(
            400,
            f"the prompt is {n_tokens} tokens, over this server's limit of {state.prompt_cap}: shorten it",
            param,
            "context_length_exceeded",
        )


def sampler_for(body) -> Sampler:
    """The Sampler of a request body (temperature, top_p, and the top_k extension)."""
    # Sampling runs on float32 logits: below ~1e-38 a temperature's reciprocal overflows and a
    # top_p rounds to 0, and the step fails on NaNs. At 1e-30 both already mean "the most
    # likely token" (ties aside), so smaller values are raised to it rather than refused.
    temperature = max(body.temperature, TINY_SAMPLING) if body.temperature > 0 else 0.0
    return Sampler(
        temperature=temperature,
        top_k=body.top_k or None,
        top_p=max(body.top_p, TINY_SAMPLING) if body.top_p < 1.0 else None,
    )


class EventStream(StreamingResponse):
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


class ClientWatch:
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


async def wait_event(handle: Handle, watch: ClientWatch) -> dict:
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
    """Submit ``job`` and answer with its result: one JSON body, or server-sent events."""
    handle = request.app.state.engine.submit(job)
    watch = ClientWatch(request)
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
            yield sse(chunk)
        event = first
        while True:
            if event["type"] == "error":
                yield sse(ApiError.from_engine(event["error"]).body())
                return
            if event["type"] == "done":
                if include_usage:
                    yield sse(fmt.usage_chunk(usage(event["completion_tokens"])))
                yield sse("[DONE]")
                return
            for d in event["choices"]:
                yield sse(fmt.chunk(d))
            try:
                event = await wait_event(handle, watch)
            except ApiError:  # the client went away: nobody to tell
                return

    return EventStream(events(), handle.cancel)


def playground_page() -> str | None:
    """The playground page shipped in the package, or None if it is not there."""
    try:
        page = resources.files("gptlab.serve").joinpath("static", PLAYGROUND)
        return page.read_text(encoding="utf-8") if page.is_file() else None
    except (FileNotFoundError, OSError):
        return None


def chat_prompt(state, messages, max_tokens: int) -> tuple[list[int], list[str]]:
    """A chat request's messages -> (prompt ids in the run's template, its next-turn markers)."""
    from gptlab.chat import ChatSession, stop_markers

    session = ChatSession(state.model, state.tokenizer, state.template, max_new_tokens=max_tokens)
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
    sent = sum(len(state.tokenizer.encode(m.text)) for m in messages)
    check_prompt(state, sent, "messages")
    return session.prompt_ids("\n\n".join(user)), list(stop_markers(state.template))


def model_card(state) -> dict:
    return {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "gptlab"}


# --------------------------------------------------------------------------------------- routes


async def playground(request: Request):
    page = playground_page()
    if page is None:
        raise ApiError(
            404, "the playground page is not installed (gptlab/serve/static/index.html)", code="not_found"
        )
    return HTMLResponse(page, headers={"X-Content-Type-Options": "nosniff"})


async def healthz(request: Request):
    state = request.app.state
    return {"status": "ok", "model": state.model_id, "kind": state.kind, "stats": state.engine.stats}


async def models(request: Request):
    return {"object": "list", "data": [model_card(request.app.state)]}


async def model_info(name: str, request: Request):
    state = request.app.state
    if name != state.model_id:
        raise ApiError(
            404, f"no model {name!r}: this server serves {state.model_id!r}", "model", "model_not_found"
        )
    return model_card(state)


async def completions(body: CompletionRequest, request: Request):
    state = request.app.state
    need_lm(state)
    max_tokens = body.max_tokens or min(DEFAULT_COMPLETION_TOKENS, state.limits.max_tokens_cap)
    check_limits(state, max_tokens, body.n)
    # same encoding as gptlab.generate.generate_text (so a seed gives the same text); off the
    # event loop, since a long prompt takes a while to tokenize
    ids = await run_in_threadpool(encode_prompt, state.tokenizer, body.prompt)
    check_prompt(state, len(ids), "prompt")
    job = GenerationJob(
        ids,
        max_tokens,
        sampler_for(body),
        n=body.n,
        stops=body.stops,
        seed=body.seed,
        top_logprobs=body.logprobs,
        timeout_s=state.limits.timeout_s,
    )
    fmt = CompletionFormat(state.model_id, body.prompt, body.logprobs)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await run_job(request, job, fmt, body.stream, include_usage)


async def chat_completions(body: ChatCompletionRequest, request: Request):
    state = request.app.state
    need_lm(state)
    default_tokens = min(DEFAULT_CHAT_TOKENS, state.limits.max_tokens_cap)
    max_tokens = body.max_completion_tokens or body.max_tokens or default_tokens
    check_limits(state, max_tokens, body.n)
    if body.top_logprobs is not None and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
    ids, markers = await run_in_threadpool(chat_prompt, state, body.messages, max_tokens)
    top = (body.top_logprobs or 0) if body.logprobs else None
    job = GenerationJob(
        ids,
        max_tokens,
        sampler_for(body),
        n=body.n,
        stops=[*markers, *body.stops],
        seed=body.seed,
        top_logprobs=top,
        timeout_s=state.limits.timeout_s,
    )
    fmt = ChatFormat(state.model_id, top)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await run_job(request, job, fmt, body.stream, include_usage)


async def classify(body: ClassifyRequest, request: Request):
    state = request.app.state
    classifier = state.classifier
    if classifier is None:
        raise ApiError(
            400,
            f"{state.model_id} is a language model, not a classifier run (make one with `gptlab finetune classify`)",
            code="wrong_model_kind",
        )
    texts = body.texts
    results = await state.engine.call(lambda: classifier.classify(texts), state.limits.timeout_s)
    data = [
        {
            "index": i,
            "label": r["label"],
            "probability": r["probability"],
            "probabilities": r["probabilities"],
        }
        for i, r in enumerate(results)
    ]
    return {"object": "list", "model": state.model_id, "data": data}


async def favicon(request: Request):
    return Response(status_code=204)


def register(app: FastAPI) -> None:
    """Add the error handlers and routes to ``app`` (whose state `create_app` filled); the
    attention route is `gptlab.serve.app.attention`."""
    for error, handler in (
        (ApiError, api_error),
        (RequestValidationError, invalid_request),
        (StarletteHTTPException, http_error),
        (GptlabError, gptlab_error),
        (EngineError, engine_error),
        (Exception, unexpected_error),
    ):
        app.add_exception_handler(error, handler)
    app.add_api_route("/", playground, methods=["GET"], include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/models/{name}", model_info, methods=["GET"])
    app.add_api_route("/v1/completions", completions, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/classify", classify, methods=["POST"])
    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
