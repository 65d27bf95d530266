"""The HTTP API: an OpenAI-compatible server for one run directory (FastAPI), and the playground.

`create_app(model_dir, limits=ServeLimits(...), ...)` loads the run (a language model, or a
classifier run from ``gptlab finetune classify``), starts the `Engine` that owns it, keeps both in
``app.state``, and registers the routes (module-level functions over that state, in
gptlab.serve.routes; the wire formats are gptlab.serve.formats). It returns the ASGI app that
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
  503, a generation past ``timeout_s`` 504 (every limit: gptlab.serve.limits.ServeLimits). A request never gets a 500 for bad input, and
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
import secrets
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from gptlab.errors import GptlabError
from gptlab.serve import routes
from gptlab.serve.engine import Engine
from gptlab.serve.formats import ApiError
from gptlab.serve.guards import LOOPBACK_HOSTS, TrustedHosts
from gptlab.serve.limits import ServeLimits
from gptlab.serve.schemas import AttentionRequest

ATTENTION_SIGMAS = (0.1, 0.5, 1.0, 2.0)  # as `gptlab analyze attention` by default


# ----------------------------------------------------------------------------------- middleware


class _Guard:
    """API key, body size and body time, checked before FastAPI sees the request (a plain ASGI
    middleware, so streaming responses pass through untouched). The body is read here, at most
    ``max_body_bytes`` of it within ``read_timeout_s`` (else a 413 or 408, and the connection is
    closed: a client trickling its body would otherwise hold it open for ever), and replayed to
    the app; later ``receive`` calls (disconnect detection) go to the server as usual."""

    def __init__(
        self,
        app,
        *,
        api_key: str | None,
        max_body_bytes: int,
        read_timeout_s: float = ServeLimits.read_timeout_s,
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


# ----------------------------------------------------------------------------------------- app


def _load(model_dir: str, device: str, dtype: str | None = None):
    """(kind, gpt, tokenizer, classifier or None) for a run directory (``dtype``: a language
    model's, see gptlab.rundir.load_model; a classifier keeps its own)."""
    from gptlab.run import Run

    run = Run.open(model_dir)
    if run.kind == "classifier":
        clf = run.load_classifier(device)
        return "classifier", clf.model.gpt, clf.tokenizer, clf
    return ("lm", *run.load(device, dtype), None)


async def attention(body: AttentionRequest, request: Request):
    from gptlab.interpret.analyses.attention import attention_analysis, attention_html

    state = request.app.state
    model, tokenizer = state.model, state.tokenizer
    ids = await run_in_threadpool(tokenizer.encode, body.text)
    limit = min(state.limits.max_attention_tokens, model.config.block_size)
    if not ids:
        raise ApiError(400, "the text encodes to no tokens", "text")
    if len(ids) > limit:
        raise ApiError(
            400, f"the text is {len(ids)} tokens; the attention view takes at most {limit}", "text"
        )

    def page() -> str:
        out, attns = attention_analysis(model, tokenizer, ids, list(ATTENTION_SIGMAS))
        return attention_html(out, attns)

    html = await state.engine.call(page, state.limits.timeout_s)
    return HTMLResponse(html)


def create_app(
    model_dir: str | Path,
    *,
    limits: ServeLimits | None = None,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    device: str = "cpu",
    allowed_hosts: Sequence[str] | None = None,
    rag_index: str | Path | None = None,
    dtype: str | None = None,
) -> FastAPI:
    """The API for the run at ``model_dir`` (see the module docstring), within ``limits``
    (default: `ServeLimits`' defaults).
    ``allowed_hosts``: the Host header names answered (default: the loopback names; ``["*"]``:
    any), see gptlab.serve.guards. ``rag_index``: a retrieval index to answer ``POST /v1/rag``
    from (gptlab.serve.rag). ``dtype``: the language model's ("auto": bf16 where native, see
    gptlab.rundir.load_model; None: as stored).

    ``app.state`` holds what the routes read: ``engine``, ``model``, ``tokenizer``,
    ``classifier`` (None for a language model), ``kind`` ("lm" or "classifier"), ``template``
    (the chat template of a language model), ``model_id``, ``created``, ``limits`` and
    ``prompt_cap`` (the longest prompt accepted)."""
    limits = limits or ServeLimits()
    hosts = list(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
    if not hosts:
        raise GptlabError("allowed_hosts is empty: give at least one host name, or '*' for any")
    if api_key is not None and not api_key.strip():
        raise GptlabError("the API key is empty: give a non-empty key, or none to serve without one")
    model_dir = str(model_dir)
    if not Path(model_dir).is_dir():
        raise GptlabError(f"model {model_dir} is not a folder: give a run directory (--model RUN)")
    kind, model, tokenizer, classifier = _load(model_dir, device, dtype)
    template = None
    if kind == "lm":
        from gptlab.run import Run

        template = Run.open(model_dir).template
    engine = Engine(
        model,
        tokenizer,
        max_concurrent=limits.max_concurrent,
        max_queue=limits.max_queue,
        batching=limits.batching,
        prefill_chunk=limits.prefill_chunk_tokens,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(engine.close)

    app = FastAPI(title="gptlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    state = app.state
    state.engine, state.model, state.tokenizer, state.classifier = engine, model, tokenizer, classifier
    state.kind, state.template, state.limits = kind, template, limits
    state.model_id = Path(model_dir).resolve().name
    state.created = int(Path(model_dir).stat().st_mtime)
    state.prompt_cap = limits.prompt_cap(model.config.block_size)
    routes.register(app)
    app.add_api_route("/v1/analyze/attention", attention, methods=["POST"])
    state.model_dir = model_dir
    if rag_index is not None:
        from gptlab.serve.rag import attach_rag

        attach_rag(app, str(rag_index), device)

    # outermost last: CORS must answer preflight requests before the API key is asked for, and
    # nothing at all is answered to a Host name the server does not go by (DNS rebinding)
    app.add_middleware(
        _Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes, read_timeout_s=limits.read_timeout_s
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TrustedHosts, allowed_hosts=hosts)
    return app
