"""Throughput and latency of ``gptlab serve`` under concurrent clients, against the same requests
made by calling the model directly in-process, in one run.

    python bench/serve.py [--model RUN] [--clients 4] [--seconds 10] [--max-tokens 32] [--json]

The server is the real app (``gptlab.serve.app.create_app``) run by uvicorn in a background thread
of this process, bound to 127.0.0.1 on a free port; nothing else is contacted. ``--clients``
threads, each with its own httpx client, send non-streaming ``POST /v1/completions`` requests
(the same prompt, ``--max-tokens`` new tokens, temperature 1, a different seed per request) one
after the other until ``--seconds`` have passed or ``--max-requests`` were sent; a request in
flight at the deadline is waited for (up to the client time-out). Measured:

- served: requests/s and generated tokens/s (``usage.completion_tokens`` summed over the wall time
  of the phase), p50/p99/max latency per request, and the error count (any non-200 answer or
  failed request), which must be 0: the script exits 1 otherwise;
- direct (the reference): the same number of requests, with the same sampling settings, made by
  calling ``gptlab.generate.generate`` sequentially on the same model object (stopping at the end
  token like the server), bounded by ``--reference-seconds``; its tokens/s and per-request latency;
- ratios: ``served_vs_direct_tokens_per_s`` (above 1 means the server's batching or overlap beats
  a plain loop, below 1 is the cost of HTTP, JSON, scheduling and queueing) and
  ``p50_latency_served_over_direct`` (a served request waits for the others: with N clients
  and no batching, expect about N).

The default model is a tiny random GPT (2 layers, 64 wide, a character tokenizer), where the
per-request overhead is most visible; pass ``--model RUN`` for a trained run. Clients and server
share this process (and its GIL), so the served figures are a lower bound on a separate-process
deployment; the load average at start and end is recorded because other work skews everything.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import string
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

DEFAULT_PROMPT = "The quick brown fox"
HOST = "127.0.0.1"


def tiny_run(folder: Path) -> Path:
    """A random tiny GPT with a character tokenizer, saved as a run directory."""
    from gptlab.model import GPT, GPTConfig
    from gptlab.rundir import save_model
    from gptlab.tokenizers import CharTokenizer
    from gptlab.tokenizers.base import EOT

    tok = CharTokenizer.train([string.printable], special_tokens=[EOT])
    torch.manual_seed(0)
    cfg = GPTConfig.preset("tiny", vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=4, block_size=128)
    run = folder / "tiny-random"
    save_model(run, GPT(cfg).eval(), tok)
    return run


@contextmanager
def serving(app, timeout: float = 30.0):
    """Run ``app`` with uvicorn in a daemon thread on 127.0.0.1 and a free port; yield its base URL.

    The socket is bound here and handed to uvicorn, so no other process can take the port between
    choosing and binding it."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "p50_ms": round(1000 * percentile(seconds, 50), 2),
        "p99_ms": round(1000 * percentile(seconds, 99), 2),
        "max_ms": round(1000 * max(seconds), 2),
        "mean_ms": round(1000 * statistics.fmean(seconds), 2),
    }


def served_phase(base_url: str, model_id: str, args: argparse.Namespace) -> dict:
    """``args.clients`` threads sending completions until the deadline or the request cap."""
    import httpx

    lock = threading.Lock()
    latencies: list[float] = []
    tokens = [0]
    errors: list[str] = []
    sent = [0]

    def take_ticket() -> int | None:
        with lock:
            if sent[0] >= args.max_requests:
                return None
            sent[0] += 1
            return sent[0]

    deadline = time.monotonic() + args.seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=args.request_timeout) as http:
            while time.monotonic() < deadline:
                ticket = take_ticket()
                if ticket is None:
                    return
                body = {
                    "model": model_id,
                    "prompt": args.prompt,
                    "max_tokens": args.max_tokens,
                    "temperature": args.temperature,
                    "seed": args.seed + ticket,
                }
                start = time.perf_counter()
                try:
                    r = http.post("/v1/completions", json=body)
                    elapsed = time.perf_counter() - start
                    if r.status_code != 200:
                        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
                    n = int(r.json()["usage"]["completion_tokens"])
                except Exception as exc:  # every failure is counted, none stops the bench
                    with lock:
                        errors.append(f"client {index}: {type(exc).__name__}: {exc}"[:300])
                    continue
                with lock:
                    latencies.append(elapsed)
                    tokens[0] += n

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + args.request_timeout + 5)
    wall = time.perf_counter() - start
    hung = sum(t.is_alive() for t in threads)
    if hung:
        errors.append(f"{hung} client thread(s) still running after the deadline")
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:5],
        "wall_seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "tokens": tokens[0],
        "tokens_per_s": round(tokens[0] / wall, 1),
        "latency": latency_summary(latencies),
    }


def direct_phase(model, tokenizer, n_requests: int, args: argparse.Namespace) -> dict:
    """The same requests by calling the engine in-process, one after the other (the reference)."""
    from gptlab.generate import Sampler, generate

    prompt_ids = tokenizer.encode(args.prompt)
    eos = tokenizer.eot_id
    device = next(model.parameters()).device
    latencies: list[float] = []
    tokens = 0
    deadline = time.monotonic() + args.reference_seconds
    start = time.perf_counter()
    for i in range(max(1, n_requests)):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        generator = torch.Generator(device=device).manual_seed(args.seed + i + 1)
        out = generate(
            model,
            [prompt_ids],
            args.max_tokens,
            Sampler(temperature=args.temperature),
            eos_id=eos,
            generator=generator,
        )[0][len(prompt_ids) :]
        latencies.append(time.perf_counter() - t0)
        tokens += len(out) - (1 if out and out[-1] == eos else 0)  # the end token is not text
    wall = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "cut_by_reference_seconds": len(latencies) < max(1, n_requests),
        "wall_seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "latency": latency_summary(latencies),
    }


def run(args: argparse.Namespace) -> dict:
    import httpx

    from gptlab.rundir import load_model
    from gptlab.serve.app import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gptlab-bench-serve-") as tmp:
        model_dir = Path(args.model) if args.model else tiny_run(Path(tmp))
        app = create_app(model_dir)
        with serving(app) as base_url:
            with httpx.Client(base_url=base_url, timeout=args.request_timeout) as http:
                models = http.get("/v1/models").json()
                model_id = models["data"][0]["id"]
                # warm-up: the first request pays for lazy imports and allocator growth
                warm = http.post(
                    "/v1/completions",
                    json={"model": model_id, "prompt": args.prompt, "max_tokens": args.max_tokens, "seed": 0},
                )
                if warm.status_code != 200:
                    raise SystemExit(f"warm-up request failed: HTTP {warm.status_code}: {warm.text[:300]}")
            served = served_phase(base_url, model_id, args)
        # the reference gets its own copy of the weights, loaded the way the server loads them
        model, tokenizer = load_model(model_dir)
        model.eval()
        with torch.no_grad():
            direct_phase(model, tokenizer, 1, args)  # warm-up
            direct = direct_phase(model, tokenizer, served["requests"], args)
    served_p50, direct_p50 = served["latency"]["p50_ms"], direct["latency"]["p50_ms"]
    return {
        "bench": "serve",
        "config": {
            "model": str(args.model) if args.model else "tiny random (2 layers, 64 wide, char tokenizer)",
            "clients": args.clients,
            "seconds": args.seconds,
            "max_requests": args.max_requests,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "prompt": args.prompt,
            "stream": False,
            "reference_seconds": args.reference_seconds,
        },
        "machine": machine_info(),
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "requests_per_s": served["requests_per_s"],
        "tokens_per_s": served["tokens_per_s"],
        "p50_latency_ms": served_p50,
        "p99_latency_ms": served["latency"]["p99_ms"],
        "errors": served["errors"],
        "served": served,
        "direct": direct,
        # the server's seeded sampling is gptlab.generate's, so equal counts mean equal work
        "same_token_count": served["tokens"] == direct["tokens"] and direct["requests"] == served["requests"],
        "ratios": {
            "served_vs_direct_tokens_per_s": round(served["tokens_per_s"] / direct["tokens_per_s"], 3)
            if direct["tokens_per_s"]
            else None,
            "p50_latency_served_over_direct": round(served_p50 / direct_p50, 3)
            if served_p50 and direct_p50
            else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run directory to serve (default: a tiny random model)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the served phase")
    parser.add_argument("--max-requests", type=int, default=10_000, help="cap on requests sent in all")
    parser.add_argument("--max-tokens", type=int, default=32, help="new tokens per request")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--seed", type=int, default=1000, help="request i uses seed + i")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="client time-out per request (s)")
    parser.add_argument(
        "--reference-seconds", type=float, default=30.0, help="cap on the in-process reference phase"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.max_requests < 1 or args.max_tokens < 1:
        parser.error("--clients, --seconds, --max-requests and --max-tokens must be positive")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        s, d = report["served"], report["direct"]
        print(f"served ({args.clients} clients, {s['wall_seconds']} s, max_tokens {args.max_tokens})")
        print(
            f"  requests {s['requests']:>8}   requests/s {s['requests_per_s']:>8}   tokens/s {s['tokens_per_s']:>8}"
        )
        print(
            f"  latency p50 {s['latency']['p50_ms']} ms   p99 {s['latency']['p99_ms']} ms   errors {s['errors']}"
        )
        print(f"direct, in-process, sequential ({d['requests']} requests)")
        print(
            f"  requests/s {d['requests_per_s']:>8}   tokens/s {d['tokens_per_s']:>8}   p50 {d['latency']['p50_ms']} ms"
        )
        for k, v in report["ratios"].items():
            print(f"  {k:34} {v}")
        for e in s["error_examples"]:
            print(f"  error: {e}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
