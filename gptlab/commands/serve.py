"""``gptlab serve --model RUN``: the OpenAI-compatible API and the playground (thin wrapper over
gptlab.serve.create_app and uvicorn).

Binds 127.0.0.1 unless ``--host`` says otherwise: exposing a model to a network is a decision the
user makes explicitly (and then an API key is the way to keep it to the people who have the key).
The key is best given in the environment or a file: a command line is visible to every user of the
machine (``ps``). Every limit is checked before the model is loaded, so a bad flag fails at once.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.serve.limits import ServeLimits

API_KEY_ENV = "GPTLAB_API_KEY"
# flag (its argparse dest) -> the ServeLimits field it sets; the flag's default is the field's
LIMIT_FLAGS = {
    "max_prompt_tokens": "max_prompt_tokens",
    "max_tokens": "max_tokens_cap",
    "max_n": "max_n",
    "max_body_bytes": "max_body_bytes",
    "timeout": "timeout_s",
    "max_concurrent": "max_concurrent",
    "max_queue": "max_queue",
    "read_timeout": "read_timeout_s",
    "max_connections": "max_connections",
    "prefill_chunk_tokens": "prefill_chunk_tokens",
}
LIMITS = ServeLimits()  # the defaults
# seconds that must be > 0, and the other limit flags, counts that must be >= 1: checked in `run`
# before the model loads, with the flag's name in the message
POSITIVE_SECONDS = ("timeout", "read_timeout")
POSITIVE_INTS = tuple(flag for flag in LIMIT_FLAGS if flag not in POSITIVE_SECONDS)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API, with a web playground at /",
        description=(
            "Start an HTTP server for a run directory: GET /v1/models, POST /v1/completions and "
            "/v1/chat/completions (streaming, n, stop, seed, logprobs), /v1/classify for classifier runs, "
            "/v1/analyze/attention, /v1/rag (with --rag-index), GET /healthz, and the playground page at /. The official openai "
            "client works against http://HOST:PORT/v1. Binds 127.0.0.1 by default; CORS is closed unless "
            "--cors-origin is given; requests naming another host in their Host header are refused "
            "(DNS rebinding) unless --allowed-hosts lists it. API key: --api-key-file FILE or the "
            f"environment variable {API_KEY_ENV} (--api-key KEY works too, but shows the key in ps)."
        ),
    )
    p.add_argument(
        "--model", required=True, metavar="RUN", help="run directory (a language model or classifier)"
    )
    p.add_argument(
        "--rag-index",
        metavar="INDEX",
        help="a retrieval index (`gptlab rag index`): POST /v1/rag answers questions from it, citing chunks",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--api-key",
        default=None,
        help=(
            "require 'Authorization: Bearer KEY' on /v1 routes. Visible to other users in ps: "
            f"prefer --api-key-file or the environment variable {API_KEY_ENV} (used when neither "
            "flag is given)"
        ),
    )
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="read the API key from the first line of FILE (keep it chmod 600)",
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=LIMITS.max_prompt_tokens,
        help="longest prompt accepted, in tokens (default: the model's context)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=LIMITS.max_tokens_cap,
        help="cap on a request's max_tokens (default: %(default)s)",
    )
    p.add_argument(
        "--max-n", type=int, default=LIMITS.max_n, help="cap on a request's n (default: %(default)s)"
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=LIMITS.max_body_bytes,
        help="largest request body (default: %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=LIMITS.timeout_s,
        help="seconds a request may take, queueing included, before a 504 (default: %(default)s)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=LIMITS.max_concurrent,
        help="generations run at once, batched step by step; more wait in a queue (default: %(default)s)",
    )
    p.add_argument(
        "--prefill-chunk-tokens",
        type=int,
        default=LIMITS.prefill_chunk_tokens,
        help=(
            "prompt tokens prefilled per step between two batched decode steps, so a long prompt "
            "does not stall the other clients (default: %(default)s)"
        ),
    )
    p.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="advance generations one at a time in turn instead of in one batched forward (for comparison)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=LIMITS.max_queue,
        help="generations waiting for a slot; beyond it requests get a 503 (default: %(default)s)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=LIMITS.read_timeout_s,
        help=(
            "seconds a request's headers, and then its body, may take to arrive; a slower client gets "
            "a 408 and the connection is closed (default: %(default)s)"
        ),
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=LIMITS.max_connections,
        help="open connections at once; beyond it requests get a 503 (default: %(default)s)",
    )
    p.add_argument(
        "--allowed-hosts",
        metavar="HOST,...",
        help=(
            "the names this server answers to in the Host header, instead of 127.0.0.1, localhost, "
            "[::1] and --host's own (ports do not matter; *.example.lan matches subdomains; '*' turns "
            "the check off)"
        ),
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (e.g. http://localhost:3000) to call the API; repeatable",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument(
        "--dtype",
        help="auto (bfloat16 where native, else float32), float32, bfloat16 or float16 (default: as stored)",
    )
    p.set_defaults(func=run)


def check_limits(args: argparse.Namespace) -> None:
    """Every numeric flag in range (a GptlabError naming the flag otherwise)."""
    if not 0 <= args.port <= 65535:
        raise GptlabError(f"--port must be in 0..65535, got {args.port}")
    for name in POSITIVE_INTS:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GptlabError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in POSITIVE_SECONDS:
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise GptlabError(f"--{name.replace('_', '-')} must be a number of seconds > 0, got {value}")


def limits_from_args(args: argparse.Namespace) -> ServeLimits:
    """The ServeLimits the flags describe."""
    limits = {field: getattr(args, flag) for flag, field in LIMIT_FLAGS.items()}
    return ServeLimits(**limits, batching=getattr(args, "batching", True))


def read_key_file(path: str) -> str:
    """The first line of ``path``, stripped; a clear error if it cannot be read or is empty."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise GptlabError(f"cannot read the API key file {path}: {reason}") from None
    key = text.splitlines()[0].strip() if text.strip() else ""
    if not key:
        raise GptlabError(f"the API key file {path} is empty: put the key on its first line")
    mode = Path(path).stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} is readable by other users: chmod 600 {path}", file=sys.stderr)
    return key


def resolve_api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else --api-key-file, else $GPTLAB_API_KEY, else None (no key)."""
    if args.api_key is not None and args.api_key_file is not None:
        raise GptlabError("give --api-key or --api-key-file, not both")
    if args.api_key_file is not None:
        return read_key_file(args.api_key_file)
    if args.api_key is not None:
        return args.api_key
    return os.environ.get(API_KEY_ENV) or None


def allowed_hosts(args: argparse.Namespace) -> list[str]:
    from gptlab.serve.guards import default_allowed_hosts, parse_allowed_hosts

    if args.allowed_hosts is None:
        return default_allowed_hosts(args.host)
    hosts = parse_allowed_hosts(args.allowed_hosts)
    if not hosts:
        raise GptlabError("--allowed-hosts is empty: give host names separated by commas, or '*' for any")
    if "*" in hosts:
        print(
            "warning: --allowed-hosts '*' turns the Host check off: any web page can reach this server "
            "through DNS rebinding; set an API key",
            file=sys.stderr,
        )
    return hosts


def run(args: argparse.Namespace) -> int:
    check_limits(args)
    try:
        import uvicorn

        from gptlab.serve.app import create_app
        from gptlab.serve.guards import uvicorn_options
    except ImportError as e:
        raise GptlabError(
            f"gptlab serve needs FastAPI and uvicorn ({e.name} is missing): pip install 'gptlab[serve]'"
        ) from None
    api_key = resolve_api_key(args)
    hosts = allowed_hosts(args)
    limits = limits_from_args(args)
    app = create_app(
        args.model,
        limits=limits,
        api_key=api_key,
        cors_origins=tuple(args.cors_origin),
        device=args.device,
        allowed_hosts=hosts,
        rag_index=args.rag_index,
        dtype=args.dtype,
    )
    auth = "API key required" if api_key else "no API key"
    print(f"serving {args.model} on http://{args.host}:{args.port} ({auth}); Ctrl-C stops", flush=True)
    print(f"answering to Host: {', '.join(hosts)} (--allowed-hosts changes it)", flush=True)
    options = uvicorn_options(header_timeout_s=limits.read_timeout_s, max_connections=limits.max_connections)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", **options)
    return 0
