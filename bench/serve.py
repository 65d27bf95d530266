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

Sweep mode (``--sweep 1,4,8,16``): for each client count, ``--clients`` is that many threads
sending *streaming* completions for ``--seconds``; measured per count are the aggregate generated
tokens/s, the time to first token (TTFT: request sent -> first text chunk) and the inter-token
latency (the gap between consecutive text chunks of a stream), p50/p99, and errors. It runs the
batched engine and, unless ``--no-compare``, the older interleaving path (``--no-batching``) in the
same process, one after the other, and reports their ratio. ``--in-process`` drives the engine
directly from coroutines on one event loop (what the routes do), without HTTP or client threads:
the engine's own figures, which a busy machine distorts less. ``--shape 124m`` serves a random
model of GPT-2 small's shape (12 layers, 768 wide, 50257-token vocabulary, 1024 context; its
tokenizer maps ids to distinct characters, so sampled text is noise but the work is GPT-2's):

    python bench/serve.py --sweep 1,4,8,16 --shape 124m --seconds 20 --max-tokens 16 --json

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


def gpt2_shape_run(folder: Path) -> Path:
    """A random model of GPT-2 small's shape with a 50257-token character tokenizer (50256
    distinct code points + <|endoftext|>), saved as a run directory: GPT-2's compute, no download."""
    from gptlab.model import GPT, GPTConfig
    from gptlab.rundir import save_model
    from gptlab.tokenizers import CharTokenizer
    from gptlab.tokenizers.base import EOT

    chars = [chr(c) for c in range(0x20, 0x20 + 50256 + 2048) if not 0xD800 <= c < 0xE000][:50256]
    tok = CharTokenizer.train(["".join(chars)], special_tokens=[EOT])
    torch.manual_seed(0)
    cfg = GPTConfig.preset("gpt2-124m", vocab_size=tok.vocab_size, block_size=1024)
    run = folder / "gpt2-124m-shape-random"
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


def completion_body(model_id: str, args: argparse.Namespace, ticket: int) -> dict:
    """The request a client sends: the same prompt and settings, a seed per request."""
    return {
        "model": model_id,
        "prompt": args.prompt,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": args.seed + ticket,
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
                body = completion_body(model_id, args, ticket)
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


def _stream_report(
    clients: int, ttft: list, gaps: list, tokens: int, errors: list, wall: float, cpu: float
) -> dict:
    """A phase's figures. ``tokens_per_cpu_s``: tokens per second of this process's CPU time, the
    figure a busy machine distorts least (wall-clock rates follow whatever CPU share we got)."""
    return {
        "clients": clients,
        "requests": len(ttft),
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_seconds": round(wall, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "cpu_seconds": round(cpu, 3),
        "tokens_per_cpu_s": round(tokens / cpu, 2) if cpu > 0 else None,
        "ttft": latency_summary(ttft),
        "inter_token": latency_summary(gaps),
    }


def streaming_phase(base_url: str, model_id: str, clients: int, args: argparse.Namespace) -> dict:
    """``clients`` threads sending streaming completions until the deadline: tokens/s, TTFT and
    inter-token latency (each text chunk of a stream counts as one token's arrival)."""
    import httpx

    lock = threading.Lock()
    ttft: list[float] = []
    gaps: list[float] = []
    tokens = [0]
    errors: list[str] = []
    tickets = iter(range(1, 10**9))
    deadline = time.monotonic() + args.seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=args.request_timeout) as http:
            while time.monotonic() < deadline:
                with lock:
                    ticket = next(tickets)
                body = {**completion_body(model_id, args, ticket), "stream": True}
                start = time.perf_counter()
                arrivals: list[float] = []
                try:
                    with http.stream("POST", "/v1/completions", json=body) as r:
                        if r.status_code != 200:
                            raise RuntimeError(f"HTTP {r.status_code}: {r.read()[:200]!r}")
                        for line in r.iter_lines():
                            if not line.startswith("data: ") or line == "data: [DONE]":
                                continue
                            chunk = json.loads(line[len("data: ") :])
                            if "error" in chunk:
                                raise RuntimeError(f"error event: {chunk['error']}")
                            if chunk["choices"] and chunk["choices"][0].get("text"):
                                arrivals.append(time.perf_counter())
                except Exception as exc:  # every failure is counted, none stops the bench
                    with lock:
                        errors.append(f"client {index}: {type(exc).__name__}: {exc}"[:300])
                    continue
                with lock:
                    tokens[0] += len(arrivals)
                    if arrivals:
                        ttft.append(arrivals[0] - start)
                        gaps.extend(b - a for a, b in zip(arrivals, arrivals[1:]))

    start = time.perf_counter()
    cpu_start = time.process_time()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + args.request_timeout + 5)
    wall = time.perf_counter() - start
    if any(t.is_alive() for t in threads):
        errors.append("client thread(s) still running after the deadline")
    cpu = time.process_time() - cpu_start
    return _stream_report(clients, ttft, gaps, tokens[0], errors, wall, cpu)


def engine_phase(engine, tokenizer, clients: int, args: argparse.Namespace) -> dict:
    """As `streaming_phase`, without HTTP: ``clients`` coroutines on one event loop submit jobs to
    the engine and read its events (what the server's routes do), so the figures are the engine's
    own, free of the client threads' and the web server's share of the CPU and the GIL."""
    import asyncio

    from gptlab.generate import Sampler
    from gptlab.serve.engine import GenerationJob

    prompt_ids = tokenizer.encode(args.prompt)
    ttft: list[float] = []
    gaps: list[float] = []
    tokens = [0]
    errors: list[str] = []
    tickets = iter(range(1, 10**9))

    async def client(deadline: float) -> None:
        while time.monotonic() < deadline:
            job = GenerationJob(
                prompt_ids,
                args.max_tokens,
                Sampler(temperature=args.temperature),
                seed=args.seed + next(tickets),
                timeout_s=args.request_timeout,
            )
            start = time.perf_counter()
            arrivals: list[float] = []
            handle = engine.submit(job)
            while True:
                event = await handle.next_event(args.request_timeout)
                if event["type"] == "error":
                    errors.append(str(event["error"].message)[:300])
                    break
                if event["type"] == "done":
                    break
                if event["choices"][0]["text"]:
                    arrivals.append(time.perf_counter())
            tokens[0] += len(arrivals)
            if arrivals:
                ttft.append(arrivals[0] - start)
                gaps.extend(b - a for a, b in zip(arrivals, arrivals[1:]))

    async def main() -> None:
        deadline = time.monotonic() + args.seconds
        await asyncio.gather(*(client(deadline) for _ in range(clients)))

    start = time.perf_counter()
    cpu_start = time.process_time()
    asyncio.run(main())
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return _stream_report(clients, ttft, gaps, tokens[0], errors, wall, cpu)


def sweep_engine(model_dir: Path, batching: bool, counts: list[int], args: argparse.Namespace) -> dict:
    """Serve ``model_dir`` with the batched engine or the interleaving one; one phase per count."""
    import httpx

    from gptlab.serve.app import create_app
    from gptlab.serve.limits import ServeLimits

    if args.in_process:
        return _summarize(_engine_phases(model_dir, batching, counts, args))

    limits = ServeLimits(
        max_concurrent=max(counts), batching=batching, max_tokens_cap=max(1024, args.max_tokens)
    )
    app = create_app(model_dir, limits=limits)
    phases = {}
    with serving(app) as base_url:
        with httpx.Client(base_url=base_url, timeout=args.request_timeout) as http:
            model_id = http.get("/v1/models").json()["data"][0]["id"]
            warm = {"model": model_id, "prompt": args.prompt, "max_tokens": 4, "seed": 0}
            if http.post("/v1/completions", json=warm).status_code != 200:
                raise SystemExit("warm-up request failed")
        for clients in counts:
            phases[str(clients)] = streaming_phase(base_url, model_id, clients, args)
    return _summarize(phases)


def _engine_phases(model_dir: Path, batching: bool, counts: list[int], args: argparse.Namespace) -> dict:
    from gptlab.rundir import load_model
    from gptlab.serve.engine import Engine

    model, tokenizer = load_model(model_dir)
    engine = Engine(model.eval(), tokenizer, max_concurrent=max(counts), batching=batching)
    try:
        warm = argparse.Namespace(**{**vars(args), "seconds": 0.01, "max_tokens": 4})
        engine_phase(engine, tokenizer, 1, warm)
        return {str(clients): engine_phase(engine, tokenizer, clients, args) for clients in counts}
    finally:
        engine.close()


def _summarize(phases: dict) -> dict:
    by = {
        "tokens_per_s_by_clients": {k: p["tokens_per_s"] for k, p in phases.items()},
        "ttft_p50_ms_by_clients": {k: p["ttft"]["p50_ms"] for k, p in phases.items()},
        "ttft_p99_ms_by_clients": {k: p["ttft"]["p99_ms"] for k, p in phases.items()},
        "inter_token_p50_ms_by_clients": {k: p["inter_token"]["p50_ms"] for k, p in phases.items()},
        "inter_token_p99_ms_by_clients": {k: p["inter_token"]["p99_ms"] for k, p in phases.items()},
        "tokens_per_cpu_s_by_clients": {k: p["tokens_per_cpu_s"] for k, p in phases.items()},
        "errors_by_clients": {k: p["errors"] for k, p in phases.items()},
    }
    return {**by, "errors": sum(p["errors"] for p in phases.values()), "phases": phases}


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def run_sweep(args: argparse.Namespace) -> dict:
    counts = [int(c) for c in args.sweep.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gptlab-bench-serve-") as tmp:
        if args.model:
            model_dir, shape = Path(args.model), str(args.model)
        elif args.shape == "124m":
            model_dir, shape = gpt2_shape_run(Path(tmp)), "random GPT-2 124M shape (12x768, vocab 50257)"
        else:
            model_dir, shape = tiny_run(Path(tmp)), "tiny random (2 layers, 64 wide, char tokenizer)"
        batched = sweep_engine(model_dir, True, counts, args)
        interleaved = sweep_engine(model_dir, False, counts, args) if args.compare else None
    report = {
        "bench": "serve-sweep",
        "config": {
            "model": shape,
            "clients": counts,
            "seconds": args.seconds,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "prompt": args.prompt,
            "stream": True,
            "in_process": args.in_process,
            "torch_threads": torch.get_num_threads(),
        },
        "machine": machine_info(),
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        **{k: v for k, v in batched.items() if k != "phases"},
        "batched": batched,
    }
    tps = batched["tokens_per_s_by_clients"]
    cps = batched["tokens_per_cpu_s_by_clients"]
    ratios = {
        "tokens_per_s_over_1_client": {k: _ratio(v, tps.get("1")) for k, v in tps.items()},
        "tokens_per_cpu_s_over_1_client": {k: _ratio(v, cps.get("1")) for k, v in cps.items()},
    }
    if interleaved is not None:
        report["interleaved"] = interleaved
        old = interleaved["tokens_per_s_by_clients"]
        ratios["batched_over_interleaved_tokens_per_s"] = {k: _ratio(tps[k], old[k]) for k in tps}
        old_cpu = interleaved["tokens_per_cpu_s_by_clients"]
        ratios["batched_over_interleaved_tokens_per_cpu_s"] = {
            k: _ratio(batched["tokens_per_cpu_s_by_clients"][k], old_cpu[k]) for k in tps
        }
        ratios["batched_over_interleaved_ttft_p50"] = {
            k: _ratio(batched["ttft_p50_ms_by_clients"][k], interleaved["ttft_p50_ms_by_clients"][k])
            for k in tps
        }
        ratios["batched_over_interleaved_inter_token_p50"] = {
            k: _ratio(
                batched["inter_token_p50_ms_by_clients"][k], interleaved["inter_token_p50_ms_by_clients"][k]
            )
            for k in tps
        }
        report["errors"] += interleaved["errors"]
    report["ratios"] = ratios
    return report


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
    parser.add_argument("--sweep", help="comma-separated client counts (e.g. 1,4,8,16): streaming sweep mode")
    parser.add_argument(
        "--shape", choices=("tiny", "124m"), default="tiny", help="random model to serve without --model"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="sweep mode: drive the engine directly (no HTTP, no client threads)",
    )
    parser.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="sweep mode: skip the interleaving (--no-batching) engine",
    )
    args = parser.parse_args(argv)
    if args.sweep:
        try:
            counts = [int(c) for c in args.sweep.split(",")]
        except ValueError:
            parser.error(f"--sweep takes comma-separated integers, got {args.sweep!r}")
        if not counts or min(counts) < 1 or args.seconds <= 0 or args.max_tokens < 1:
            parser.error("--sweep counts, --seconds and --max-tokens must be positive")
        report = run_sweep(args)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            for name in ("batched", "interleaved"):
                if name not in report:
                    continue
                print(name)
                for key in (
                    "tokens_per_s_by_clients",
                    "ttft_p50_ms_by_clients",
                    "ttft_p99_ms_by_clients",
                    "inter_token_p50_ms_by_clients",
                    "tokens_per_cpu_s_by_clients",
                    "inter_token_p99_ms_by_clients",
                    "errors_by_clients",
                ):
                    print(f"  {key:32} {report[name][key]}")
            for key, value in report["ratios"].items():
                print(f"{key:42} {value}")
        return 1 if report["errors"] else 0
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
