"""``gptlab serve --model RUN``: the OpenAI-compatible API and the playground (thin wrapper over
gptlab.serve.create_app and uvicorn).

Binds 127.0.0.1 unless ``--host`` says otherwise: exposing a model to a network is a decision the
user makes explicitly (and then ``--api-key`` is the way to keep it to the people who have the key).
"""

from __future__ import annotations

import argparse
import os

from gptlab.errors import GptlabError

API_KEY_ENV = "GPTLAB_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API, with a web playground at /",
        description=(
            "Start an HTTP server for a run directory: GET /v1/models, POST /v1/completions and "
            "/v1/chat/completions (streaming, n, stop, seed, logprobs), /v1/classify for classifier runs, "
            "/v1/analyze/attention, GET /healthz, and the playground page at /. The official openai "
            "client works against http://HOST:PORT/v1. Binds 127.0.0.1 by default; CORS is closed unless "
            "--cors-origin is given."
        ),
    )
    p.add_argument(
        "--model", required=True, metavar="RUN", help="run directory (a language model or classifier)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on /v1 routes (default: env {API_KEY_ENV}, else none)",
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        help="longest prompt accepted, in tokens (default: the model's context)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=1024, help="cap on a request's max_tokens (default: %(default)s)"
    )
    p.add_argument("--max-n", type=int, default=8, help="cap on a request's n (default: %(default)s)")
    p.add_argument(
        "--max-body-bytes", type=int, default=1_000_000, help="largest request body (default: %(default)s)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a request may take, queueing included, before a 504 (default: %(default)s)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=8,
        help="generations run at once, interleaved step by step; more wait in a queue (default: %(default)s)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (e.g. http://localhost:3000) to call the API; repeatable",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from gptlab.serve.app import create_app
    except ImportError as e:
        raise GptlabError(
            f"gptlab serve needs FastAPI and uvicorn ({e.name} is missing): pip install 'gptlab[serve]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise GptlabError(f"--port must be in 0..65535, got {args.port}")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    app = create_app(
        args.model,
        api_key=api_key,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens_cap=args.max_tokens,
        max_n=args.max_n,
        max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout,
        cors_origins=tuple(args.cors_origin),
        device=args.device,
        max_concurrent=args.max_concurrent,
    )
    auth = "API key required" if api_key else "no API key"
    print(f"serving {args.model} on http://{args.host}:{args.port} ({auth}); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
